"""Speed at national scale: N units, two forms each, measured end to end in fresh processes.

Run: .venv/bin/python bench/national.py [--units N] [--skip-baseline] [--workdir DIR]

Builds (once per N, cached in WORKDIR/case-N) a units CSV of N units, a copy of rules.yaml pointing at
it with `units_file:`, and an inbox of 2·N filled forms (about 5% with a planted error), then measures,
each in a fresh subprocess:

  (a) floor      every file's cells read with python-calamine and nothing else
  (b) baseline   the naive way: pandas.read_excel(openpyxl) + pandera per file, concat, groupby, to_excel
  (c) run        `pipeline run` from an empty state
  (d) rerun      the same run again (nothing new)
  (e) check      `pipeline check` on one file

Peak RSS: "max" is the largest single process of the tree (rusage of the waited child, which Linux
folds its own reaped children into); "tree" is the largest sum of RSS over the whole process tree,
sampled from /proc every 20 ms (pipeline run reads files in limited worker processes).
Deterministic: the same N gives the same units, values and errors. Asserts nothing.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import os
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import textwrap
import threading
import time
from dataclasses import dataclass
from multiprocessing import Pool
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

AS_OF = "2017-02-01T12:00"
ERROR_SHARE = 0.05
SEED = 2017
GIB = 1024**3

# --- the case -----------------------------------------------------------------------------------------------


def unit_rows(n: int, kinds: list[str]) -> list[dict[str, str]]:
    rows = []
    for i in range(1, n + 1):
        code = f"U{i:04d}"
        rows.append(
            {
                "code": code,
                "name": f"第{i:04d}号基层工会",
                "kind": kinds[(i - 1) % len(kinds)],
                "reports_to": "province",
                "items": "warmth center report",
                "email": f"u{i:04d}@example.org",
                "aliases": f"基层{i:04d}号 {code}工会",
            }
        )
    return rows


def write_rules(case: Path, n: int) -> Path:
    import yaml

    data = yaml.safe_load((ROOT / "rules.yaml").read_text(encoding="utf-8"))
    kinds = list(data["unit_kinds"])
    with (case / "units.csv").open("w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(
            fh, fieldnames=["code", "name", "kind", "reports_to", "items", "email", "aliases"]
        )
        writer.writeheader()
        writer.writerows(unit_rows(n, kinds))
    data.pop("units", None)
    data["units_file"] = "units.csv"
    path = case / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return path


_RULES = None


def _init(rules_path: str) -> None:
    global _RULES
    from pipeline import checks

    _RULES = checks.load(rules_path)


def _fill_unit(job: tuple[int, str]) -> int:
    """Write one unit's two forms; returns how many carry a planted error."""
    from pipeline import demo
    from pipeline.io import atomic
    from pipeline.render import template

    index, inbox = job
    rules = _RULES
    assert rules is not None
    unit = rules.units[index]
    rng = random.Random(SEED * 1_000_003 + index)
    issue = rules.campaign.issue_date
    day = issue + dt.timedelta(days=28 + index % 10)
    stamp = dt.datetime.combine(day, dt.time(10, 0), tzinfo=rules.campaign.tz).timestamp()
    planted = 0
    size = rng.uniform(0.4, 1.3)
    for code in ("warmth", "center"):
        form = rules.forms[code]
        values = demo.form_values(rules, code, rng, size)
        if rng.random() < ERROR_SHARE:
            planted += 1
            if code == "warmth":
                values[("activities", "", "forums")] = "见附件"
            else:
                values[("services", "", "hotline")] = "见附件"
        path = Path(inbox) / day.isoformat() / template.file_name(unit, form)
        atomic.write_bytes(path, template.fill(rules, form, unit, values))
        os.utime(path, (stamp, stamp))
    return planted


def build_case(workdir: Path, n: int) -> tuple[Path, Path, int]:
    """The cached case for N: (rules copy, inbox, planted errors)."""
    case = workdir / f"case-{n}"
    done = case / "DONE"
    if done.exists():
        return case / "rules.yaml", case / "inbox", int(done.read_text())
    if case.exists():
        shutil.rmtree(case)
    (case / "inbox").mkdir(parents=True)
    rules_path = write_rules(case, n)
    start = time.perf_counter()
    with Pool(2, initializer=_init, initargs=(str(rules_path),)) as pool:
        planted = sum(
            pool.imap_unordered(_fill_unit, [(i, str(case / "inbox")) for i in range(n)], chunksize=16)
        )
    done.write_text(str(planted))
    print(
        f"generated case-{n}: {2 * n} files, {planted} with a planted error, in {time.perf_counter() - start:.1f} s"
    )
    return rules_path, case / "inbox", planted


# --- the measured scripts -------------------------------------------------------------------------------------

FLOOR = textwrap.dedent("""
    import sys
    from pathlib import Path
    from python_calamine import CalamineWorkbook
    cells = 0
    for path in sorted(Path(sys.argv[1]).rglob("*.xlsx")):
        book = CalamineWorkbook.from_path(str(path))
        for name in book.sheet_names:
            for row in book.get_sheet_by_name(name).to_python(skip_empty_area=False):
                cells += len(row)
    print("cells", cells)
""")

BASELINE = textwrap.dedent("""
    import sys
    from pathlib import Path
    import pandas as pd
    import pandera.pandas as pa

    def numeric_or_blank(s):
        return pd.to_numeric(s, errors="coerce").notna() | s.isna()

    schema = pa.DataFrameSchema({
        "file": pa.Column(str),
        "sheet": pa.Column(str),
        "cell": pa.Column(str),
        "value": pa.Column(object, nullable=True),
    }, checks=[pa.Check(lambda df: numeric_or_blank(df["value"]) | ~df["cell"].str.match(r"^[C-J]\\d+$"),
                        name="numeric")])
    frames, failed = [], 0
    for path in sorted(Path(sys.argv[1]).rglob("*.xlsx")):
        sheets = pd.read_excel(path, engine="openpyxl", sheet_name=None, header=None)
        for name, df in sheets.items():
            long = df.stack().reset_index()
            long.columns = ["r", "c", "value"]
            long["cell"] = [f"{chr(65 + int(c))}{int(r) + 1}" for r, c in zip(long["r"], long["c"])]
            long["file"] = path.name
            long["sheet"] = str(name)
            long = long[["file", "sheet", "cell", "value"]]
            try:
                schema.validate(long, lazy=True)
            except pa.errors.SchemaErrors:
                failed += 1
            frames.append(long)
    every = pd.concat(frames, ignore_index=True)
    every["number"] = pd.to_numeric(every["value"], errors="coerce")
    summary = every.groupby(["sheet", "cell"], as_index=False)["number"].sum()
    summary.to_excel(sys.argv[2], index=False)
    print("rows", len(every), "failed", failed)
""")


@dataclass
class Measure:
    name: str
    wall: float
    files: int
    rss_max: int  # bytes, largest single process
    rss_tree: int  # bytes, largest sampled sum over the process tree
    rc: int

    @property
    def per_s(self) -> float:
        return self.files / self.wall if self.wall else float("inf")


def _tree_rss(pid: int) -> int:
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        try:
            with open(f"/proc/{p}/status") as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
                        break
            for task in os.listdir(f"/proc/{p}/task"):
                with open(f"/proc/{p}/task/{task}/children") as fh:
                    todo.extend(int(c) for c in fh.read().split())
        except (OSError, ValueError):
            continue
    return total


def measure(name: str, command: list[str], files: int, log: Path) -> Measure:
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    peak = [0]
    start = time.perf_counter()
    with log.open("wb") as out:
        proc = subprocess.Popen(command, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        stop = threading.Event()

        def sample() -> None:
            while not stop.is_set():
                peak[0] = max(peak[0], _tree_rss(proc.pid))
                stop.wait(0.02)

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - start
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        sampler.join()
    # ru_maxrss of RUSAGE_CHILDREN is a running maximum; the wait4 usage is this child's own figure.
    after = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    rss_max = max(usage.ru_maxrss, after if after > before else 0) * 1024
    return Measure(name, wall, files, rss_max, max(peak[0], rss_max), proc.returncode)


def mib(b: int) -> str:
    return f"{b / 1024**2:7.0f}"


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--units", type=int, default=3000)
    parser.add_argument(
        "--skip-baseline", action="store_true", help="do not measure (b), the slow naive baseline"
    )
    parser.add_argument(
        "--workdir", type=Path, default=Path(tempfile.gettempdir()) / "pipeline-national-bench"
    )
    args = parser.parse_args()
    n = args.units
    if not 1 <= n <= 9999:
        parser.error("--units must be between 1 and 9999")
    workdir = args.workdir.resolve()
    workdir.mkdir(parents=True, exist_ok=True)

    rules_path, inbox, planted = build_case(workdir, n)
    files = sorted(inbox.rglob("*.xlsx"))
    run_dir = workdir / f"run-{n}"
    if run_dir.exists():
        shutil.rmtree(run_dir)
    run_dir.mkdir()
    (run_dir / "floor.py").write_text(FLOOR, encoding="utf-8")
    (run_dir / "baseline.py").write_text(BASELINE, encoding="utf-8")
    py = sys.executable
    exe = str(Path(sys.executable).with_name("pipeline"))
    run_cmd = [
        exe,
        "run",
        "--rules",
        str(rules_path),
        "--inbox",
        str(inbox),
        "--outbox",
        str(run_dir / "outbox"),
        "--state",
        str(run_dir / "state"),
        "--as-of",
        AS_OF,
    ]
    planned = [
        ("(a) floor: calamine", [py, str(run_dir / "floor.py"), str(inbox)], len(files)),
        (
            "(b) baseline: pandas+pandera",
            [py, str(run_dir / "baseline.py"), str(inbox), str(run_dir / "b.xlsx")],
            len(files),
        ),
        ("(c) pipeline run", run_cmd, len(files)),
        ("(d) pipeline run again", run_cmd, len(files)),
        ("(e) pipeline check 1 file", [exe, "check", "--rules", str(rules_path), str(files[0])], 1),
    ]
    print(
        f"N = {n} units, {len(files)} form files ({planted} with a planted error), "
        f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, workdir {workdir}"
    )
    results: dict[str, Measure] = {}
    for name, command, count in planned:
        key = name[:3]
        if key == "(b)" and args.skip_baseline:
            print(f"{name:30} skipped (--skip-baseline)")
            continue
        m = measure(name, command, count, run_dir / f"{key.strip('()')}.log")
        results[key] = m
        rc_note = (
            "" if m.rc == 0 or key == "(e)" else f"  EXIT {m.rc}, see {run_dir / (key.strip('()') + '.log')}"
        )
        print(
            f"{name:30} wall {m.wall:8.2f} s  {m.per_s:8.1f} files/s  peak RSS max {mib(m.rss_max)} MiB"
            f"  tree {mib(m.rss_tree)} MiB  rc {m.rc}{rc_note}"
        )
    for key in ("c", "d"):  # what the run itself says, with the wall time of each of its stages
        run_log = (run_dir / f"{key}.log").read_text(encoding="utf-8", errors="replace").splitlines()
        for line in run_log:
            if line.startswith(("时点", "校验", "报送情况", "用时")):
                print(f"    ({key}) says: {line}")

    a, c, d, e = results["(a)"], results["(c)"], results["(d)"], results["(e)"]
    b = results.get("(b)")

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT MET"

    print("ratios and targets:")
    print(f"  c/a = {c.wall / a.wall:6.2f}   target c <= 3 x a      {verdict(c.wall <= 3 * a.wall)}")
    if b is not None:
        print(f"  b/c = {b.wall / c.wall:6.2f}   target b/c >= 10       {verdict(b.wall / c.wall >= 10)}")
    else:
        print("  b/c =    n/a   target b/c >= 10       not measured (--skip-baseline)")
    print(f"  d/c = {d.wall / c.wall:6.3f}   target d <= 0.05 x c   {verdict(d.wall <= 0.05 * c.wall)}")
    print(
        f"  RSS(c) = {c.rss_tree / 1024**2:.0f} MiB tree ({c.rss_max / 1024**2:.0f} MiB largest process)"
        f"   target <= 1024 MiB   {verdict(c.rss_tree <= GIB)}"
    )
    print(f"  e = {e.wall:.2f} s   target e <= 2 s   {verdict(e.wall <= 2)}")
    failed = [m.name for k, m in results.items() if k != "(e)" and m.rc != 0] + (
        [e.name] if e.rc not in (0, 1) else []
    )
    if failed:
        print("FAILED: " + ", ".join(failed))
        sys.exit(1)


if __name__ == "__main__":
    main()
