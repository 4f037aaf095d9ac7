"""`pipeline run --send` against a real SMTP server on 127.0.0.1 (aiosmtpd)."""

from __future__ import annotations

import dataclasses
from email import message_from_bytes, policy

from pipeline import demo
from pipeline.io import ledger
from pipeline.io.outbox import SUMMARY_DIR
from pipeline.render import status_text
from tests.conftest import campaign_at

AS_OF = "2017-02-01T12:00"


def test_feedback_is_sent_once_per_unit_retried_after_451_and_550_is_shown(rules, tmp_path, server):  # noqa: F811
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    demo.make(rules, inbox, seed=2017)
    campaign = dataclasses.replace(rules, mail=server.mail)
    level = campaign_at(campaign, inbox, outbox, state)
    when = level.moment(AS_OF)
    # Find out who will get feedback with a dry run on a copy of the state, then script the server.
    dry = campaign_at(campaign, inbox, tmp_path / "dry-out", tmp_path / "dry-state").run(when)
    written = dry.messages["written"]
    assert written >= 5
    rows = ledger.Ledger(tmp_path / "dry-state").messages()
    recipients = {r["recipient"] for r in rows if r["kind"] == "feedback"}  # a unit with problems
    refused = sorted(recipients)[0]
    server.script.rcpt[refused] = "550 5.1.1 No such user"
    server.script.data = ["451 4.3.0 稍后再试"]  # the first message that reaches DATA is deferred

    to_refused = sum(r["recipient"] == refused for r in rows)  # its feedback and its 回执 alike
    first = level.run(when, send=True)
    assert first.messages == {"sent": written - 1 - to_refused, "tempfail": 1, "refused": to_refused}
    # The refusal shows in this very run's draft, though the draft was begun before anything was sent.
    (draft,) = (outbox / SUMMARY_DIR).glob("*情况报告*.html")
    assert "邮件被拒收" in draft.read_text(encoding="utf-8")
    assert len(server.script.received) == written - 1 - to_refused
    for envelope in server.script.received:
        message = message_from_bytes(envelope.original_content, policy=policy.default)
        if message["Subject"].startswith("【回执】"):  # a version that counts: short, nothing attached
            assert "已收到" in message["Subject"] and not list(message.iter_attachments())
            continue
        assert "【送温暖统计表" in message["Subject"] or "【帮扶中心统计表" in message["Subject"]
        # A reply goes where the unit sends its forms: the department, or ZX for the units below it.
        unit = next(u for u in rules.units if u.email == message["To"].addresses[0].addr_spec)
        expected = (
            rules.mail.reply_to_address
            if unit.reports_to == "province"
            else rules.unit(unit.reports_to).email
        )
        assert message["Reply-To"].addresses[0].addr_spec == expected
        (attachment,) = list(message.iter_attachments())
        assert attachment.get_filename().endswith("_校验结果.xlsx")
        assert attachment.get_content()[:2] == b"PK"
    once = {
        (tuple(e.rcpt_tos), message_from_bytes(e.original_content, policy=policy.default)["Subject"])
        for e in server.script.received
    }
    assert len(once) == len(server.script.received)  # each message once

    second = level.run(when, send=True)
    assert second.messages == {"sent": 1}  # the deferred one, and nothing else
    assert len(server.script.received) == written - to_refused

    third = level.run(when, send=True)
    assert third.messages == {}
    assert len(server.script.received) == written - to_refused

    book = ledger.Ledger(state)
    now = level.status(when)
    code = next(r["unit"] for r in book.messages() if r["recipient"] == refused)
    problem = {r.mail_problem for r in now.rows if r.unit == code}
    assert any("邮件被拒收" in p and "550" in p for p in problem)
    assert "邮件被拒收" in status_text.render_text(now, campaign)
