"""Time of an annotated copy by each route, on the same files: the XML edit (xlsxpatch) and openpyxl.

Run: .venv/bin/python bench/annotate.py [--runs R]

Fills every unit's forms with two planted mistakes each, checks them, and annotates each (the copies
`pipeline run` sends back), R times by each route in turn, in this process. Prints the copies per
route and the best and median milliseconds per copy (wall and CPU). Asserts nothing.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def copies() -> list[tuple[bytes, str, tuple[object, ...]]]:
    """Every unit's every form, filled as `demo` fills them with two planted mistakes each (text in a count
    cell, a total that does not add up), and its findings."""
    from pipeline import demo
    from pipeline.campaign import config
    from pipeline.render import template
    from pipeline.runs import check

    rules = config.load(ROOT / "rules.yaml")
    with tempfile.TemporaryDirectory() as folder:
        paths = []
        for index, unit in enumerate(rules.units):
            rng = random.Random(2017 + index)
            for item in unit.items:
                form = rules.forms.get(rules.items[item].form or "")
                if form is None:
                    continue
                values = demo.form_values(rules, form.code, rng, 1.0)
                if form.code == "warmth":
                    values[("activities", "", "forums")] = "见附件"
                    values[("visits", "total", "households")] += 7
                else:
                    values[("services", "", "hotline")] = "见附件"
                    values[("aid", "total", "persons")] += 7
                path = Path(folder) / template.file_name(unit, form)
                path.write_bytes(template.fill(rules, form, unit, values))
                paths.append(path)
        results = check.check_paths(paths, rules)
        return [
            (p.read_bytes(), p.name, r.findings) for p, r in zip(paths, results, strict=True) if r.findings
        ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    from pipeline.render import annotate

    files = copies()
    by_xml = annotate._patched
    fell_back = []

    def xml_edit(*args: object, **kwargs: object) -> bytes | None:
        copy = by_xml(*args, **kwargs)  # type: ignore[arg-type]
        if copy is None:
            fell_back.append(args[1])
        return copy

    def openpyxl_only(*_: object, **__: object) -> None:  # as annotate does for what the edit leaves
        return None

    def annotate_all(route: Callable[..., bytes | None]) -> None:
        annotate._patched = route  # type: ignore[assignment]
        for data, name, findings in files:
            annotate.annotated_workbook(data, name, findings, unit_name="单位", title="校验结果")  # type: ignore[arg-type]

    routes = {"xml edit": xml_edit, "openpyxl": openpyxl_only}
    timings: dict[str, tuple[list[float], list[float]]] = {name: ([], []) for name in routes}
    annotate_all(xml_edit)  # imports and first-use caches
    annotate_all(openpyxl_only)
    for _ in range(args.runs):
        for name, route in routes.items():
            wall, cpu = time.perf_counter(), time.process_time()
            annotate_all(route)
            timings[name][0].append((time.perf_counter() - wall) / len(files) * 1000)
            timings[name][1].append((time.process_time() - cpu) / len(files) * 1000)
    annotate._patched = by_xml  # type: ignore[assignment]
    print(f"{len(files)} copies, {args.runs} runs each route (ms per copy, best / median)")
    print(f"  the XML edit left {len(set(fell_back))} of them to openpyxl")
    for name, (walls, cpus) in timings.items():
        print(
            f"  {name:9} wall {min(walls):6.1f} / {statistics.median(walls):6.1f}   "
            f"cpu {min(cpus):6.1f} / {statistics.median(cpus):6.1f}"
        )


if __name__ == "__main__":
    main()
