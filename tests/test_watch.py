"""`pipeline watch`, `fetch`, `confirm` and `send-templates` as staff run them: real processes and the CLI,
against Dovecot and aiosmtpd on 127.0.0.1. A watch answers at once, lets `pipeline run` take turns with
it, stops cleanly on SIGTERM, and a kill loses nothing and doubles nothing."""

from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.io.ledger import Ledger
from tests import mailclients
from tests.dovecot import PASSWORD, PASSWORD_ENV, USER, Dovecot, pointed_rules
from tests.smtpserver import Server
from tests.test_mailbox import at, form, received

ROOT = Path(__file__).resolve().parent.parent


def rules_file(tmp_path: Path, rules_text: str, imap: Dovecot, smtp: Server) -> Path:
    """rules.yaml with its mail settings pointed at the test's servers."""
    path = tmp_path / "rules.yaml"
    path.write_text(pointed_rules(rules_text, imap.port, smtp.mail.smtp_port), encoding="utf-8")
    return path


def folders(tmp_path: Path) -> list[str]:
    return [
        "--inbox",
        str(tmp_path / "inbox"),
        "--outbox",
        str(tmp_path / "outbox"),
        "--state",
        str(tmp_path / "state"),
    ]


def start_watch(tmp_path: Path, rules: Path, log: str) -> subprocess.Popen[bytes]:
    (tmp_path / "inbox").mkdir(exist_ok=True)
    env = {**os.environ, PASSWORD_ENV: PASSWORD, "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "watch", "--send", "--rules", str(rules), *folders(tmp_path)],
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=(tmp_path / log).open("wb"),
        stderr=subprocess.STDOUT,
    )
    process.log = tmp_path / log  # type: ignore[attr-defined]  # where it says it has started
    return process


def wait_for(condition, seconds: float = 120, what: str = "") -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail(f"waited {seconds} s for {what}")
        time.sleep(0.2)


def stop(process: subprocess.Popen[bytes], sig: int = signal.SIGTERM) -> int:
    if (
        sig != signal.SIGKILL
    ):  # as staff would: to a watch that has started (a signal while Python starts kills it)
        log = process.log  # type: ignore[attr-defined]
        wait_for(
            lambda: process.poll() is not None or "开始守候" in log.read_text(encoding="utf-8"), what="start"
        )
    os.killpg(process.pid, sig) if sig == signal.SIGKILL else process.send_signal(sig)
    try:
        return process.wait(30)
    finally:
        if sig != signal.SIGKILL:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)  # any worker left behind


def test_watch_answers_at_once_takes_turns_with_run_and_stops_on_sigterm(
    rules, rules_text, tmp_path, dovecot, server, fill
):  # noqa: F811
    path = rules_file(tmp_path, rules_text, dovecot, server)
    watch = start_watch(tmp_path, path, "watch.log")
    try:
        wrong = form(rules, fill, unit="460200", changes={("visits", "agri", "households_archived"): 999999})
        sent_at = time.monotonic()
        dovecot.append(
            mailclients.message("netease", rules.unit("460200").email, [wrong], subject="三亚报表")
        )
        wait_for(lambda: server.script.received, what="the feedback")
        answered = time.monotonic() - sent_at
        [reply] = received(server)
        assert reply["Subject"] == "Re: 三亚报表" and reply["In-Reply-To"]
        assert answered < 60

        # The weekly run takes its turn between the watch's rounds.
        env = {**os.environ, PASSWORD_ENV: PASSWORD}
        for _ in range(20):
            done = subprocess.run(
                [sys.executable, "-m", "pipeline", "run", "--rules", str(path), *folders(tmp_path)],
                cwd=tmp_path,
                env=env,
                capture_output=True,
                text=True,
                timeout=300,
            )
            if done.returncode != 2 or "正在运行" not in done.stderr:
                break
            time.sleep(0.5)
        assert done.returncode == 0, done.stderr
        assert "报送情况" in done.stdout

        assert stop(watch) == 0
    finally:
        if watch.poll() is None:
            stop(watch, signal.SIGKILL)
    log = (tmp_path / "watch.log").read_text(encoding="utf-8")
    assert "开始守候" in log and "已停止守候" in log and "Traceback" not in log
    # Each round in words staff read (通过 1, 已发送 1), not the ledger's codes (accepted 1, sent 1).
    rounds = [line for line in log.splitlines() if "新收" in line]
    assert rounds and not any(re.search(r"(校验|邮件) [a-z]", line) for line in rounds), rounds
    assert len(server.script.received) == 1


def test_a_killed_watch_loses_nothing_and_doubles_nothing(rules, rules_text, tmp_path, dovecot, server, fill):  # noqa: F811
    path = rules_file(tmp_path, rules_text, dovecot, server)
    codes = ["460100", "460200", "460400", "469001"]
    for code in codes:
        wrong = form(rules, fill, unit=code, changes={("visits", "agri", "households_archived"): 999999})
        dovecot.append(mailclients.message("qq", rules.unit(code).email, [wrong], subject=f"{code} 报表"))
    watch = start_watch(tmp_path, path, "first.log")
    try:
        wait_for(lambda: server.script.received, what="a first reply")
    finally:
        stop(watch, signal.SIGKILL)  # mid-round: fetching, checking or sending
    again = start_watch(tmp_path, path, "second.log")
    try:
        book = Ledger(tmp_path / "state")

        def settled() -> bool:
            rows = book.messages()
            return len(rows) == len(codes) and all(r["status"] in ("sent", "unknown") for r in rows)

        wait_for(settled, what="every message answered or left to staff")
        assert stop(again) == 0
    finally:
        if again.poll() is None:
            stop(again, signal.SIGKILL)
    replies = [m["In-Reply-To"] for m in received(server)]
    assert len(replies) == len(set(replies))  # none twice
    mails = list(book.db.execute("SELECT message_id FROM mails"))
    assert len(mails) == len(codes)  # each message taken once
    rows = book.messages()
    sent = [r for r in rows if r["status"] == "sent"]
    unknown = [r for r in rows if r["status"] == "unknown"]
    # Each unit's message is answered, or (killed while sending) left to staff; a reply killed after the
    # server took it but before the ledger heard back may have arrived, so it is "unknown", not resent.
    assert len(sent) + len(unknown) == len(codes)
    assert len(sent) <= len(replies) <= len(sent) + len(unknown)


# --- the other commands, through the CLI --------------------------------------------------------------------


def test_fetch_and_confirm_through_the_cli(rules, rules_text, tmp_path, dovecot, server, fill, monkeypatch):  # noqa: F811
    path = rules_file(tmp_path, rules_text, dovecot, server)
    (tmp_path / "inbox").mkdir()
    dovecot.append(
        mailclients.message("outlook", "clerk@163.com", [form(rules, fill)], subject="海口报表"), at(20, 9)
    )
    runner = CliRunner()
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)

    fetched = runner.invoke(
        app, ["fetch", "--rules", str(path), "--as-of", "2017-02-01T12:00", *folders(tmp_path)]
    )
    assert fetched.exit_code == 0, fetched.output
    assert "新收 1 封" in fetched.output and "clerk@163.com「海口报表」" in fetched.output
    ran = runner.invoke(app, ["run", "--rules", str(path), "--as-of", "2017-02-01T12:00", *folders(tmp_path)])
    assert ran.exit_code == 0, ran.output
    listed = runner.invoke(app, ["confirm", "--rules", str(path), "--state", str(tmp_path / "state")])
    assert "待确认的文件 1 个" in listed.output and "clerk@163.com" in listed.output
    number = re.search(r"^\s+([0-9a-f]{12})\s", listed.output, re.MULTILINE)
    assert number
    confirmed = runner.invoke(
        app, ["confirm", number.group(1), "--rules", str(path), "--state", str(tmp_path / "state")]
    )
    assert confirmed.exit_code == 0 and "已确认" in confirmed.output
    assert (
        "待确认的文件 0 个"
        in runner.invoke(app, ["confirm", "--rules", str(path), "--state", str(tmp_path / "state")]).output
    )

    monkeypatch.delenv(PASSWORD_ENV)
    refused = runner.invoke(app, ["fetch", "--rules", str(path), *folders(tmp_path)])
    assert refused.exit_code == 2 and PASSWORD_ENV in refused.output


def test_a_mailbox_that_cannot_be_reached_is_said_in_chinese(
    rules_text, tmp_path, dovecot, server, monkeypatch
):  # noqa: F811
    path = rules_file(tmp_path, rules_text, dovecot, server)
    path.write_text(
        path.read_text(encoding="utf-8").replace(f"imap_user: {USER}", "imap_user: wrong"), encoding="utf-8"
    )
    monkeypatch.setenv(PASSWORD_ENV, PASSWORD)
    result = CliRunner().invoke(app, ["fetch", "--rules", str(path), *folders(tmp_path)])
    assert result.exit_code == 2 and "登录收信服务器" in result.output and "Traceback" not in result.output


def test_send_templates_once_per_unit_and_version(rules, rules_text, tmp_path, dovecot, server):  # noqa: F811
    path = rules_file(tmp_path, rules_text, dovecot, server)
    runner = CliRunner()
    args = [
        "send-templates",
        "--send",
        "--rules",
        str(path),
        "--outbox",
        str(tmp_path / "outbox"),
        "--state",
        str(tmp_path / "state"),
        "--as-of",
        "2017-01-05",
    ]

    one = runner.invoke(app, [*args, "--unit", "460100"])
    assert one.exit_code == 0, one.output
    [haikou] = received(server)
    names = sorted(a.get_filename() for a in haikou.iter_attachments())
    assert names == [
        "海口市总工会_附件1_2016年工会送温暖统计表.xlsx",
        "海口市总工会_附件2_2016年度困难职工帮扶中心工作统计表.xlsx",
    ]
    body = haikou.get_body(("plain",)).get_content()
    assert "flbzb@sina.com" in body and "2017年2月5日" in body and "送温暖报告" in body
    assert haikou["Auto-Submitted"] == "auto-generated"

    every = runner.invoke(app, args)
    assert every.exit_code == 0, every.output
    assert len(server.script.received) == len(rules.children("province"))  # Haikou's not again
    assert "各单位都已发过" in runner.invoke(app, args).output

    newer = path.read_text(encoding="utf-8").replace('version: "2017.1"', 'version: "2017.2"', 1)
    path.write_text(newer, encoding="utf-8")
    assert runner.invoke(app, [*args, "--unit", "460100"]).exit_code == 0
    assert (
        len(server.script.received) == len(rules.children("province")) + 1
    )  # a new template version goes out


def test_a_fetch_killed_mid_way_takes_each_message_once(rules, rules_text, tmp_path, dovecot, server, fill):  # noqa: F811
    path = rules_file(tmp_path, rules_text, dovecot, server)
    codes = [u.code for u in rules.units][:24]
    for i, code in enumerate(codes):
        dovecot.append(
            mailclients.message(
                mailclients.CLIENTS[i % 5], rules.unit(code).email, [form(rules, fill, unit=code)]
            ),
            at(20, 8, i),
        )
    env = {**os.environ, PASSWORD_ENV: PASSWORD}
    command = [
        sys.executable,
        "-m",
        "pipeline",
        "fetch",
        "--rules",
        str(path),
        "--as-of",
        "2017-02-01T12:00",
        *folders(tmp_path),
    ]
    first = subprocess.Popen(
        command,
        cwd=tmp_path,
        env=env,
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    mail = tmp_path / "inbox" / "邮件"
    wait_for(lambda: mail.is_dir() and any(mail.iterdir()), seconds=60, what="the first message's folder")
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()

    done = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)

    assert done.returncode == 0, done.stderr
    book = Ledger(tmp_path / "state")
    ids = [r["message_id"] for r in book.db.execute("SELECT message_id FROM mails")]
    assert len(ids) == len(set(ids)) == len(codes)
    assert len([p for p in mail.rglob("*.xlsx")]) == len(codes)
    assert not list(mail.glob(".收取中-*"))
