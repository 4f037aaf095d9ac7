"""bench/national.py runs end to end on a small case and prints every measurement and ratio (no timings asserted)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_national_bench_small(tmp_path: Path) -> None:
    done = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "national.py"),
            "--units",
            "30",
            "--skip-baseline",
            "--workdir",
            str(tmp_path),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    out = done.stdout
    for name in (
        "(a) floor",
        "(b) baseline",
        "(c) pipeline run",
        "(d) pipeline run again",
        "(e) pipeline check",
    ):
        assert name in out, name
    for ratio in ("c/a =", "b/c =", "d/c =", "RSS(c) =", "e ="):
        assert ratio in out, ratio
    assert "60 form files" in out
    assert (tmp_path / "case-30" / "DONE").exists()


def test_mailbox_bench_small() -> None:
    """bench/mailbox.py end to end over a short window: every unit's first submission and correction answered."""
    from tests.conftest import require_program

    require_program("dovecot", "dovecot-imapd") if not Path("/usr/sbin/dovecot").exists() else None
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "mailbox.py"), "--window", "5"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "first submissions, APPEND to reply accepted: 28 replies, median" in done.stdout, done.stdout
    assert (
        "corrected resubmissions, APPEND to reply accepted:" in done.stdout and "missing" not in done.stdout
    )
