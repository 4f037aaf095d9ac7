"""Each hostile case of tests/test_hostile.py through `pipeline check --json`, in a fresh process.

Run: .venv/bin/python bench/hostile.py. Prints case | verdict | rule | peak RSS MB | seconds, a correct form
first as the baseline, then the limits of rules.yaml they ran under. The peak RSS is
the largest of the check process and its worker processes (resource.getrusage(RUSAGE_CHILDREN) of a fresh
wrapper process per case); asserts nothing.
"""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

# Runs in a fresh wrapper, so RUSAGE_CHILDREN covers this one case only.
WRAPPER = """
import resource, subprocess, sys
p = subprocess.run(sys.argv[1:], capture_output=True)
sys.stdout.buffer.write(p.stdout)
sys.stderr.write(f"\\nMAXRSS_KB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n")
sys.stderr.write(p.stderr.decode("utf-8", "replace"))
"""


def main() -> None:
    from pipeline import checks
    from tests.test_hostile import ACTIVE, CASES, base_form, build

    rules = checks.load(ROOT / "rules.yaml")
    rows = [("case", "verdict", "rule", "peak RSS MB", "seconds")]
    with tempfile.TemporaryDirectory() as tmp:
        for case in ["good_form", *CASES, *ACTIVE]:
            if case == "good_form":
                path = Path(tmp) / "海口市总工会_附件1.xlsx"
                path.write_bytes(base_form(rules))
            else:
                path = build(case, rules, Path(tmp))
            start = time.perf_counter()
            done = subprocess.run(
                [
                    sys.executable,
                    "-c",
                    WRAPPER,
                    sys.executable,
                    "-m",
                    "pipeline",
                    "check",
                    "--json",
                    str(path),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
                check=False,
            )
            seconds = time.perf_counter() - start
            rss = next(
                (
                    int(line.split("=")[1])
                    for line in done.stderr.splitlines()
                    if line.startswith("MAXRSS_KB=")
                ),
                0,
            )
            try:
                (result,) = json.loads(done.stdout)
                errors = [f for f in result["findings"] if f["severity"] == "error"] or [
                    f for f in result["findings"] if f["rule"].startswith("F-")
                ]
                verdict, rule = result["verdict"], (errors[0]["rule"] if errors else "")
            except (ValueError, KeyError):
                verdict, rule = (
                    "CRASH",
                    done.stderr.strip().splitlines()[-1][:40] if done.stderr.strip() else "",
                )
            rows.append((case, verdict, rule, f"{rss / 1024:.0f}", f"{seconds:.2f}"))
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    for r in rows:
        print(" | ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)))
    print(f"limits (rules.yaml): {rules.limits}")


if __name__ == "__main__":
    main()
