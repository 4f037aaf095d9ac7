"""`pipeline templates`: each unit's blank templates, written into a folder (the template writer itself
only makes bytes); `pipeline send-templates`: the same, e-mailed to each unit."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

from pipeline.campaign.config import Rules
from pipeline.io import atomic
from pipeline.render import template
from pipeline.runs.context import Run


def write_all(rules: Rules, out: Path, unit_code: str | None = None) -> Iterator[Path]:
    """One template per unit and form it owes (only `unit_code`'s when given), each written whole."""
    out.mkdir(parents=True, exist_ok=True)
    for blank in template.blank_forms(rules, unit_code):
        path = out / blank.name
        atomic.write_bytes(path, blank.data)
        yield path


def mail_all(run: Run, unit_code: str | None = None) -> tuple[list[str], Counter[str]]:
    """Each unit of the run's level (or `unit_code` alone) gets its own blank templates by e-mail, with the
    notice's request; once per unit and template version (a ledger key), then delivered like every
    message. Returns the names of the units written to this time, and how the sending went."""
    from pipeline.render import letters
    from pipeline.runs import senders
    from pipeline.runs.delivery import deliver
    from pipeline.runs.feedback import message_key

    rules = run.rules
    units = [rules.unit(unit_code)] if unit_code else list(rules.children(run.level))
    written, names = [], []
    for unit in units:
        forms = [rules.forms[f] for i in unit.items if (f := rules.items[i].form) is not None]
        version = ",".join(f"{f.code}={f.version}" for f in forms) or "-"
        key = message_key("templates", f"{unit.code}:{version}", unit.email)
        if run.ledger.message(key) is not None:
            continue
        blanks = [(b.form.code, b.name, b.data) for b in template.blank_forms(rules, unit.code)]
        message = letters.templates_message(rules, unit, blanks, run.as_of)
        written.append(
            senders.letter(run, key, "templates", unit.code, unit.email, None, message, f"{unit.name}_模板")
        )
        names.append(unit.name)
    if written:
        run.ledger.add_messages(written, run.as_of)
    return names, deliver(run)
