"""The status step: who has reported what, from the ledger, written to the outbox as text and JSON."""

from __future__ import annotations

import json
from pathlib import Path

from pipeline.consolidation import history, status
from pipeline.io import atomic, outbox
from pipeline.model import MessageStatus
from pipeline.render import status_text
from pipeline.runs.context import Run


def current_status(run: Run) -> status.Status:
    """The status of the run's level at its moment; a unit whose e-mail was refused or may not have arrived
    is marked so that staff phone it."""
    problems: dict[str, str] = {}
    for row in run.ledger.messages((MessageStatus.REFUSED, MessageStatus.UNKNOWN)):
        word = "邮件被拒收" if row["status"] == MessageStatus.REFUSED else "邮件是否送达不明"
        problems[row["unit"]] = f"{word}({row['recipient']}{':' + str(row['code']) if row['code'] else ''})"
    for sub in run.ledger.submissions(values=False):
        if sub.held and sub.unit:  # mailed from an address not on file: not counted until confirmed
            said = f"{sub.file} 待确认({sub.held})"
            problems[sub.unit] = f"{problems[sub.unit]};{said}" if sub.unit in problems else said
    seen = history.checked_by(run.ledger.submissions(values=False), run.as_of)
    return status.compute(run.rules, seen, run.as_of, run.level, problems, run.ledger.skipped())


def write_status(run: Run, now: status.Status) -> list[Path]:
    text, data = run.outbox / outbox.STATUS_TXT, run.outbox / outbox.STATUS_JSON
    atomic.write_text(text, status_text.render_text(now, run.rules) + "\n")
    atomic.write_text(data, json.dumps(now.as_json(), ensure_ascii=False, indent=2) + "\n")
    return [text, data]
