"""How fast a unit hears back by mail: 28 units each send their 附件1 within one minute into a real IMAP
server (Dovecot on 127.0.0.1) while `pipeline watch --send` runs; then the units whose form had errors send
it corrected. Reported: the time from the APPEND to the reply accepted by the SMTP server (aiosmtpd on
127.0.0.1), median, 95th percentile and maximum, for the first submissions and for the corrections.

    .venv/bin/python bench/mailbox.py [--window 60] [--seed 2017]

Needs Dovecot (`dovecot-imapd`, installed by scripts/test.sh).
"""

from __future__ import annotations

import argparse
import os
import random
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from email import message_from_bytes, policy
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from aiosmtpd.controller import Controller  # noqa: E402

from pipeline.campaign import config  # noqa: E402
from pipeline.render import template  # noqa: E402
from tests import mailclients  # noqa: E402
from tests.conftest import correct_values  # noqa: E402
from tests.dovecot import PASSWORD, PASSWORD_ENV, free_port, pointed_rules, running  # noqa: E402

WRONG = ("visits", "agri", "households_archived")  # more archived households than households: W-archived


class Replies:
    """The SMTP server's side: when each reply was accepted, by the message it answers."""

    def __init__(self) -> None:
        self.accepted: dict[str, float] = {}
        self.lock = threading.Lock()

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        with self.lock:
            self.accepted.setdefault(str(message["In-Reply-To"] or ""), time.time())
        return "250 2.0.0 OK queued"


def forms(rules: config.Rules, seed: int) -> list[tuple[config.Unit, bool, bytes, bytes]]:
    """Each unit's 附件1: (unit, wrong at first, as first sent, corrected)."""
    rng = random.Random(seed)
    out = []
    form = rules.forms["warmth"]
    for i, unit in enumerate(rules.units):
        values = correct_values(rules, "warmth", unit.code, seed + i)
        for key in list(values):
            if key[1] == "total":
                values[key] = None  # the SUM formula stays, as in a filled template
        good = template.fill(rules, form, unit, values)
        wrong = rng.random() < 0.5
        first = template.fill(rules, form, unit, {**values, WRONG: 999999}) if wrong else good
        out.append((unit, wrong, first, good))
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * (len(ordered) - 1))))]


def send_all(box: Any, batch: list[tuple[str, bytes]], window: float, rng: random.Random) -> dict[str, float]:
    """Each message APPENDed at a random moment of `window` seconds; when each APPEND returned."""
    moments = sorted(rng.uniform(0, window) for _ in batch)
    start, appended = time.monotonic(), {}
    for at, (message_id, raw) in zip(moments, batch, strict=True):
        time.sleep(max(0.0, start + at - time.monotonic()))
        box.append("INBOX", raw)
        appended[message_id] = time.time()
    return appended


def wait_replies(replies: Replies, ids: list[str], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        with replies.lock:
            if all(i in replies.accepted for i in ids):
                return
        time.sleep(0.1)


def report(label: str, appended: dict[str, float], replies: Replies) -> None:
    waits = [replies.accepted[i] - t for i, t in appended.items() if i in replies.accepted]
    missing = len(appended) - len(waits)
    if not waits:
        print(f"{label}: no reply arrived ({missing} missing)")
        return
    print(
        f"{label}: {len(waits)} replies, median {statistics.median(waits):.2f} s, "
        f"95th {percentile(waits, 0.95):.2f} s, max {max(waits):.2f} s"
        + (f", {missing} missing" if missing else "")
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--window", type=float, default=60.0, help="seconds over which the units send")
    parser.add_argument("--seed", type=int, default=2017)
    args = parser.parse_args()
    rules = config.load(ROOT / "rules.yaml")
    rng = random.Random(args.seed)
    units = forms(rules, args.seed)
    replies = Replies()
    smtp_port = free_port()
    controller = Controller(replies, hostname="127.0.0.1", port=smtp_port, ready_timeout=5)
    controller.start()
    work = Path(tempfile.mkdtemp(prefix="bench-mailbox-"))
    try:
        with running() as dovecot:
            rules_path = work / "rules.yaml"
            rules_path.write_text(
                pointed_rules((ROOT / "rules.yaml").read_text(encoding="utf-8"), dovecot.port, smtp_port),
                encoding="utf-8",
            )
            (work / "inbox").mkdir()
            env = {**os.environ, PASSWORD_ENV: PASSWORD, "PYTHONUNBUFFERED": "1"}
            log = (work / "watch.log").open("wb")
            watch = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "pipeline",
                    "watch",
                    "--send",
                    "--rules",
                    str(rules_path),
                    "--inbox",
                    str(work / "inbox"),
                    "--outbox",
                    str(work / "outbox"),
                    "--state",
                    str(work / "state"),
                ],
                cwd=work,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
            try:
                time.sleep(2.0)  # the watch connects and takes its first (empty) round
                box = dovecot.client()
                first, fixes = [], []
                for i, (unit, wrong, sent, good) in enumerate(units):
                    client = mailclients.CLIENTS[i % len(mailclients.CLIENTS)]
                    name = template.file_name(unit, rules.forms["warmth"])
                    mid = f"<bench.{i}.first@{unit.email.split('@')[1]}>"
                    first.append(
                        (
                            mid,
                            mailclients.message(
                                client,
                                unit.email,
                                [(name, sent)],
                                name=unit.name,
                                subject=f"{unit.name}送温暖统计表",
                                message_id=mid,
                            ),
                        )
                    )
                    if wrong:
                        fix = f"<bench.{i}.fix@{unit.email.split('@')[1]}>"
                        fixes.append(
                            (
                                fix,
                                mailclients.message(
                                    client,
                                    unit.email,
                                    [(name, good)],
                                    name=unit.name,
                                    subject=f"{unit.name}送温暖统计表(改正)",
                                    message_id=fix,
                                ),
                            )
                        )
                print(
                    f"{len(first)} units send within {args.window:g} s ({len(fixes)} with an error); "
                    f"{os.cpu_count()} cores"
                )
                appended = send_all(box, first, args.window, rng)
                wait_replies(replies, list(appended), 300)
                report("first submissions, APPEND to reply accepted", appended, replies)
                corrected = send_all(box, fixes, args.window / 2, rng)
                wait_replies(replies, list(corrected), 300)
                report("corrected resubmissions, APPEND to reply accepted", corrected, replies)
                box.logout()
            finally:
                watch.send_signal(signal.SIGTERM)
                try:
                    watch.wait(30)
                except subprocess.TimeoutExpired:
                    os.killpg(watch.pid, signal.SIGKILL)
                log.close()
            rounds = [
                line
                for line in (work / "watch.log").read_text(encoding="utf-8").splitlines()
                if "用时" in line
            ]
            print(f"watch: {len(rounds)} rounds; exit code {watch.returncode}")
    finally:
        controller.stop()
        import shutil

        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
