"""Validation alone: `checks.validate.validate` over N prepared forms, in this process.

Run: .venv/bin/python bench/validation.py [--forms N] [--repeat R]

The demo inbox's forms are read and prepared once, then copied, each copy under a unit code of its own, to
N forms, for two batches: `demo` (the demo's own mix: about one form in seven carries a planted mistake, so
every kind of rule fails somewhere and its findings are worded) and `clean` (only forms with no finding, as
at national scale, where 5% of forms carry a normalisation error and the schema finds nothing more). Prints
the best and median wall time and the best CPU time of R runs of each. Asserts nothing.
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

TODAY = dt.date(2017, 2, 6)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--forms", type=int, default=6000)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    from pipeline import checks, demo
    from pipeline.checks import validate
    from pipeline.model import Checked
    from pipeline.submission import read

    rules = checks.load(ROOT / "rules.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        made = demo.make(rules, Path(tmp) / "inbox")
        forms = sorted((f for f in made.files if rules.items[f.item].form), key=lambda f: f.path.name)
        prepared = [checks.prepare(read.read_path(f.path, rules), rules, TODAY) for f in forms]
    reports = validate.validate(prepared, rules)
    clean = [c for c, r in zip(prepared, reports, strict=True) if not r.findings]

    def copies(source: list[Checked]) -> list[Checked]:
        out = []
        for i in range(args.forms // len(source) + 1):
            for c in source:
                unit = dataclasses.replace(c.read, unit=f"{c.read.unit}-{i}")
                out.append(dataclasses.replace(c, read=unit))
        return out[: args.forms]

    validate.validate(copies(prepared)[:100], rules)  # pandera's first call builds what it caches
    for name, source in (("demo", prepared), ("clean", clean)):
        batch = copies(source)
        wall, cpu = [], []
        for _ in range(args.repeat):
            start, start_cpu = time.perf_counter(), time.process_time()
            found = validate.validate(batch, rules)
            wall.append(time.perf_counter() - start)
            cpu.append(time.process_time() - start_cpu)
        findings = sum(len(r.findings) for r in found)
        print(
            f"{name:5}: {len(batch)} forms ({len(source)} distinct), {findings} findings: wall best "
            f"{min(wall):.3f} s, median {statistics.median(wall):.3f} s; CPU best {min(cpu):.3f} s"
        )


if __name__ == "__main__":
    main()
