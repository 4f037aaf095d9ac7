"""Time of the consolidated workbook, the HTML report, the Word summary and the outliers to verify for N
units, in this process.

Run: .venv/bin/python bench/workbook.py [--units N] [--runs R] [--out DIR] [--flat-sheet]

Builds a synthetic consolidation in memory (no files): N units of the national case's kinds, each with a
correct 附件1 and 附件2 from `pipeline.demo`, accepted, received before the deadline; one unit in twenty
with two open findings. Each rendering is built once to load its imports, then R times; prints the best
and the median wall and CPU seconds. With --out, writes the three files there (to compare renderings of
two versions of the code: the same inputs give the same bytes). Asserts nothing.
"""

from __future__ import annotations

import argparse
import datetime as dt
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.national import SEED, write_rules  # noqa: E402


def case(n: int, folder: Path) -> tuple[object, ...]:
    from pipeline import demo
    from pipeline.campaign import config
    from pipeline.consolidation import consolidate, status
    from pipeline.model import Finding, Severity, Submission, Verdict

    rules = config.load(write_rules(folder, n))
    tz = rules.campaign.tz
    issue = rules.campaign.issue_date
    versions: list[Submission] = []
    findings: dict[str, list[tuple[str, Finding]]] = {}
    for index, unit in enumerate(rules.units):
        rng = random.Random(SEED * 1_000_003 + index)
        size = rng.uniform(0.4, 1.3)
        received = dt.datetime.combine(issue + dt.timedelta(days=28 + index % 10), dt.time(10, 0), tzinfo=tz)
        for item in ("warmth", "center"):
            form = rules.forms[item]
            values = demo.form_values(rules, item, rng, size)
            name = f"{unit.name}_{form.attachment}_{form.title}.xlsx"
            versions.append(
                Submission(
                    sha256=f"{index:032x}{item:0>32}"[:64],
                    unit=unit.code,
                    item=item,
                    form=item,
                    file=name,
                    received=received,
                    version=1,
                    verdict=Verdict.ACCEPTED,
                    values=values,
                )
            )
        if index % 20 == 7:
            sheet = rules.forms["warmth"].sheet
            findings[unit.code] = [
                (
                    name,
                    Finding(
                        "W-per-head",
                        Severity.WARNING,
                        "人均慰问金额 1.20 万元,超出 0.005–1 万元",
                        sheet,
                        "J9",
                    ),
                ),
                (name, Finding("R-decimals", Severity.WARNING, "金额多于两位小数,已按两位计", sheet, "I12")),
            ]
    as_of = dt.datetime(2017, 2, 1, 12, 0, tzinfo=tz)
    c = consolidate.consolidate(rules, versions, status.expected_units(rules))
    return rules, c, status.compute(rules, versions, as_of), findings, versions, as_of


def timed(build: Callable[[], object], runs: int) -> tuple[list[float], list[float], object]:
    result = build()  # imports and first-use caches
    walls, cpus = [], []
    for _ in range(runs):
        wall, cpu = time.perf_counter(), time.process_time()
        result = build()
        walls.append(time.perf_counter() - wall)
        cpus.append(time.process_time() - cpu)
    return walls, cpus, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path)
    parser.add_argument(
        "--flat-sheet", action="store_true", help="also time the 明细 table written as a sheet, however large"
    )
    args = parser.parse_args()
    from pipeline.consolidation.outliers import outliers
    from pipeline.render import detail
    from pipeline.render.html import html_report
    from pipeline.render.summary import written_summary
    from pipeline.render.wordfile import summary_docx
    from pipeline.render.workbook import consolidated_workbook

    with tempfile.TemporaryDirectory() as folder:
        rules, c, now, findings, versions, as_of = case(args.units, Path(folder))
    options = dict(as_of=as_of, final=False, edition=0)
    # As the run does it: the flat table in the workbook when small, else in a CSV beside it.
    small = sum(len(v.values) for v in c.used) <= detail.SHEET_LIMIT
    flat = "" if small else "明细.csv"
    renderings: dict[str, Callable[[], object]] = {
        "workbook.xlsx": lambda: consolidated_workbook(
            rules, c, now, findings, versions, **options, detail_csv=flat
        ),
        **({} if small else {"明细.csv": lambda: detail.to_csv(detail.rows(rules, c.used))}),
        **(
            {"with 明细 sheet": lambda: consolidated_workbook(rules, c, now, findings, versions, **options)}
            if args.flat_sheet
            else {}
        ),
        "report.html": lambda: html_report(rules, c, now, findings, **options),
        "summary.docx": lambda: summary_docx(written_summary(rules, c, now, as_of=as_of, final=False)),
        "outliers": lambda: outliers(rules, c),
    }
    print(f"{args.units} units, {args.runs} runs each (best / median)")
    for name, build in renderings.items():
        walls, cpus, result = timed(build, args.runs)
        size = len(result if isinstance(result, bytes | str) else repr(result).encode("utf-8"))
        print(
            f"  {name:14} wall {min(walls):.3f} / {statistics.median(walls):.3f} s   "
            f"cpu {min(cpus):.3f} / {statistics.median(cpus):.3f} s   {size / 1e6:.2f} MB"
        )
        if args.out and isinstance(result, bytes | str):
            args.out.mkdir(parents=True, exist_ok=True)
            data = result if isinstance(result, bytes) else str(result).encode("utf-8")
            (args.out / name).write_bytes(data)


if __name__ == "__main__":
    main()
