"""Wall time of `pipeline --help` and of `pipeline check` on one filled form, each in a fresh process.

Run: .venv/bin/python bench/latency.py [--runs N]. Prints figures; asserts nothing (the machines are
shared and noisy: read the median, compare within one run).
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def timed(command: list[str]) -> float:
    start = time.perf_counter()
    subprocess.run(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False)
    return time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=7)
    runs = parser.parse_args().runs

    from pipeline import checks, demo

    rules = checks.load(ROOT / "rules.yaml")
    with tempfile.TemporaryDirectory() as tmp:
        made = demo.make(rules, Path(tmp))
        form = next(f.path for f in made.files if f.path.suffix == ".xlsx")
        exe = str(Path(sys.executable).with_name("pipeline"))
        cases = {
            "pipeline --help": [exe, "--help"],
            "pipeline check (1 file)": [exe, "check", str(form)],
            "pipeline check --json (1 file)": [exe, "check", "--json", str(form)],
        }
        timed(cases["pipeline check (1 file)"])  # warm the OS file cache once
        print(f"{'command':34} {'median s':>9} {'min s':>7} {'max s':>7}  ({runs} runs, fresh process each)")
        for name, command in cases.items():
            times = [timed(command) for _ in range(runs)]
            print(f"{name:34} {statistics.median(times):9.3f} {min(times):7.3f} {max(times):7.3f}")


if __name__ == "__main__":
    main()
