"""Nothing outside the inbox gets in, nothing stops the run, no e-mail goes twice or astray (issue 16).

What an adversarial review found and how each now ends: odd entries in the inbox are listed as skipped
with their reason and the run finishes; a replaced file is seen whatever its size and time; an older
version sent again is a new version; e-mail goes from the ledger, never from the editable .eml copies;
a killed final edition leaves none or a complete one; a lost ledger stops the run instead of resending.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from email import message_from_bytes, policy
from pathlib import Path

import pytest

from pipeline import demo
from pipeline.io import intake, ledger
from pipeline.io import outbox as names
from tests.conftest import campaign_at

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2017-02-01T12:00"
JAN_31 = 1485820800  # 2017-01-31 08:00 +08:00, before AS_OF and after every demo file
FINAL_AS_OF = "2017-02-06T09:00"


def cli(
    *args: str, cwd: Path = ROOT, without_root_powers: bool = False, timeout: float = 300
) -> subprocess.CompletedProcess[str]:
    """`pipeline …` as a real process. `without_root_powers`: even run as root, file permissions hold (the
    process loses the capabilities that let root read anything), as for staff's own account."""
    command = [sys.executable, "-m", "pipeline", *args]
    if without_root_powers and os.geteuid() == 0:
        command = ["setpriv", "--bounding-set=-dac_override,-dac_read_search", *command]
    return subprocess.run(
        command,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )


def tree_bytes(folder: Path) -> bytes:
    """Every byte of every file under `folder`, the ledger's archive included."""
    return b"".join(p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink())


def _deeper_than_a_path_may_be(top: Path) -> None:
    """Folders nested until their path is longer than Linux lets a program name (4,096 bytes): made one
    level at a time, as an unzip tool does, each relative to the one above."""
    top.mkdir()
    fd = os.open(top, os.O_RDONLY | os.O_DIRECTORY)
    try:
        for _ in range(30):  # 30 × 169 bytes
            name = "很长的文件夹名" * 8
            os.mkdir(name, dir_fd=fd)
            inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
            os.close(fd)
            fd = inner
        made = os.open("附件1.xlsx", os.O_WRONLY | os.O_CREAT, dir_fd=fd)
        os.write(made, b"z")
        os.close(made)
    finally:
        os.close(fd)


def test_every_odd_entry_in_the_inbox_is_listed_with_its_reason_and_the_run_finishes(rules, tmp_path):
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    made = demo.make(rules, inbox, seed=2017)
    day = inbox / "2017-01-25"
    outside = tmp_path / "outside"
    outside.mkdir()
    secret = outside / "口令.txt"
    secret.write_bytes("root:x:0:0:不该出现在台账里\n".encode())
    os.mkfifo(day / "海口市总工会_附件1(管道).xlsx")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(day / "套接字.xlsx"))
    (day / "zero.xlsx").symlink_to("/dev/zero")
    (day / "urandom.xlsx").symlink_to("/dev/urandom")
    (day / "海口市总工会送温暖报告.docx").symlink_to(secret)  # named like a report
    (day / "三亚已删除.xlsx").symlink_to(tmp_path / "gone.xlsx")
    (inbox / "外部文件夹").symlink_to(outside, target_is_directory=True)
    locked_folder = inbox / "不可读文件夹"
    locked_folder.mkdir()
    (locked_folder / "文昌附件1.xlsx").write_bytes(b"x")
    locked_folder.chmod(0)
    locked_file = day / "不可读.xlsx"
    locked_file.write_bytes(b"y" * 100)
    os.utime(locked_file, (JAN_31, JAN_31))
    locked_file.chmod(0)
    _deeper_than_a_path_may_be(inbox / "转发")
    os.utime(day / "zero.xlsx", (JAN_31, JAN_31), follow_symlinks=False)
    try:
        done = cli(
            "run",
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--state",
            str(state),
            "--as-of",
            AS_OF,
            without_root_powers=True,
        )
    finally:
        locked_folder.chmod(0o755)
        listener.close()
    assert done.returncode == 0, done.stderr
    assert f"新文件 {len(made.files)} 个" in done.stdout
    reasons = {
        line.split(":", 1)[0].removeprefix("  跳过 "): line.split(":", 1)[1]
        for line in done.stdout.splitlines()
        if line.startswith("  跳过 ")
    }
    assert "管道" in reasons["2017-01-25/海口市总工会_附件1(管道).xlsx"]
    assert "套接字" in reasons["2017-01-25/套接字.xlsx"]
    assert (
        "收件箱以外" in reasons["2017-01-25/zero.xlsx"] and "收件箱以外" in reasons["2017-01-25/urandom.xlsx"]
    )
    assert "收件箱以外" in reasons["2017-01-25/海口市总工会送温暖报告.docx"]
    assert "不存在" in reasons["2017-01-25/三亚已删除.xlsx"]
    assert "收件箱以外" in reasons["外部文件夹/"]
    assert "权限" in reasons["不可读文件夹/"] and "权限" in reasons["2017-01-25/不可读.xlsx"]
    assert any("路径过长" in reason for reason in reasons.values())
    # The status says so too, and not one byte from outside the inbox reached the state or the outbox.
    status = json.loads((outbox / names.STATUS_JSON).read_text(encoding="utf-8"))
    assert {s["path"] for s in status["skipped"]} >= set(reasons) - {p for p in reasons if "很长" in p}
    assert "不该出现在台账里".encode() not in tree_bytes(state) + tree_bytes(outbox)


def test_a_file_removed_while_intake_reads_it_is_skipped_and_the_others_are_taken(
    rules, tmp_path, monkeypatch
):
    inbox = tmp_path / "inbox"
    made = demo.make(rules, inbox, seed=2017)
    victim = made.files[0].path
    read = intake._read

    def vanishing(path: str, max_bytes: int):
        if path == str(victim):
            victim.unlink()  # taken away between the walk and the read
        return read(path, max_bytes)

    monkeypatch.setattr(intake, "_read", vanishing)
    result = campaign_at(rules, inbox, tmp_path / "outbox", tmp_path / "state").run(AS_OF)
    assert len(result.intake.new) == len(made.files) - 1
    assert [(s.path.split("/")[-1], s.reason) for s in result.intake.skipped] == [
        (victim.name, "文件在读取时被移走或删除")
    ]


def test_a_replacement_with_the_same_size_and_time_is_a_new_version(rules, tmp_path, fill):
    """Copying tools keep a file's modification time; a corrected form can even keep its size. The change
    time and inode cannot be set back: the new bytes are seen, checked and used."""
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    inbox.mkdir()
    sent = inbox / "海口市总工会附件1.xlsx"
    sent.write_bytes(fill(unit="460100", changes={("activities", "", "forums"): 7}).read_bytes())
    os.utime(sent, (JAN_31, JAN_31))
    level = campaign_at(rules, inbox, outbox, state)
    level.run(AS_OF)
    before = sent.stat()
    # The corrected count, among the first that compress to the very same size.
    forums, replacement = next(
        (n, data)
        for n in range(8, 400)
        if len(
            data := fill(unit="460100", changes={("activities", "", "forums"): n}, name="b.xlsx").read_bytes()
        )
        == before.st_size
    )
    sent.write_bytes(replacement)
    os.utime(sent, ns=(before.st_atime_ns, before.st_mtime_ns))
    again = level.run(AS_OF)
    assert len(again.intake.new) == 1
    assert level.consolidate(AS_OF)["by_unit"].set_index("code").loc["460100", "forums"] == forums
    assert level.verify() == (2, [])


def test_an_older_version_sent_again_after_a_newer_one_is_a_new_version_with_its_own_feedback(
    rules, tmp_path, fill
):
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    (inbox / "1").mkdir(parents=True)
    wrong = fill(
        unit="460100", changes={("activities", "", "forums"): "见附件"}, name="wrong.xlsx"
    ).read_bytes()
    right = fill(unit="460100", name="right.xlsx").read_bytes()
    for name, data, when in (("v1.xlsx", wrong, JAN_31 - 7200), ("v2.xlsx", right, JAN_31 - 3600)):
        (inbox / "1" / name).write_bytes(data)
        os.utime(inbox / "1" / name, (when, when))
    level = campaign_at(rules, inbox, outbox, state)
    level.run(AS_OF)
    (inbox / "2").mkdir()
    (inbox / "2" / "海口附件1(再发).xlsx").write_bytes(wrong)  # the old file, sent again by mistake
    os.utime(inbox / "2" / "海口附件1(再发).xlsx", (JAN_31, JAN_31))
    again = level.run(AS_OF)
    assert (
        len(again.intake.new) == 1 and again.checked == {"rejected": 1} and again.messages == {"written": 1}
    )
    row = {(r.unit, r.item): r for r in level.status(AS_OF).rows}[("460100", "warmth")]
    assert (row.versions, row.version_used, row.state.label) == (3, 2, "未通过")


def _feedback_site(rules, tmp_path, mail):
    import dataclasses

    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    demo.make(rules, inbox, seed=2017)
    campaign = dataclasses.replace(rules, mail=mail)
    level = campaign_at(campaign, inbox, outbox, state)
    level.run(AS_OF)  # writes the messages, sends nothing
    return level, outbox, state


def test_an_edited_or_deleted_eml_changes_nothing_that_is_sent(rules, tmp_path, server):  # noqa: F811
    level, outbox, state = _feedback_site(rules, tmp_path, server.mail)
    book = ledger.Ledger(state)
    rows = book.messages()
    book.close()
    edited, deleted = (outbox / rows[0]["eml"]), (outbox / rows[1]["eml"])
    text = edited.read_bytes().replace(b"\r\nSubject:", b"\r\nBcc: everyone@example.org\r\nSubject:", 1)
    edited.write_bytes(text.replace(b"To:", b"To: attacker@example.org,", 1))
    deleted.unlink()
    sent = level.run(AS_OF, send=True)
    assert sent.messages == {"sent": len(rows)}
    # A unit gets its feedback and its 回执s: each message is known by its Message-ID and recipient.
    delivered = {
        (message["Message-ID"], e.rcpt_tos[0]): message
        for e in server.script.received
        if (message := message_from_bytes(e.original_content, policy=policy.SMTP))
    }
    assert sorted(delivered) == sorted((r["message_id"], r["recipient"]) for r in rows)
    assert all(len(e.rcpt_tos) == 1 for e in server.script.received)  # no Bcc, no extra To
    assert all(message["Bcc"] is None for message in delivered.values())
    assert deleted.read_bytes() == bytes(rows[1]["mime"])  # the copy for people is made again
    assert edited.read_bytes() == bytes(rows[0]["mime"])


def test_a_second_send_sends_nothing_and_a_lost_ledger_stops_the_run(rules, tmp_path, server):  # noqa: F811
    level, outbox, state = _feedback_site(rules, tmp_path, server.mail)
    first = level.run(AS_OF, send=True)
    assert first.messages["sent"] >= 5
    count = len(server.script.received)
    assert level.run(AS_OF, send=True).messages == {}
    assert len(server.script.received) == count
    # The ledger is deleted (or another, empty one is pointed at): the run refuses instead of resending.
    for path in state.glob("ledger.sqlite*"):
        path.unlink()
    refused = cli(
        "run",
        "--inbox",
        str(level.folders.inbox),
        "--outbox",
        str(outbox),
        "--state",
        str(state),
        "--as-of",
        AS_OF,
    )
    assert (
        refused.returncode == 2 and "verify --rebuild" in refused.stderr and "Traceback" not in refused.stderr
    )
    shutil.rmtree(state / ledger.BACKUPS)
    empty = cli(
        "run",
        "--inbox",
        str(level.folders.inbox),
        "--outbox",
        str(outbox),
        "--state",
        str(state),
        "--as-of",
        AS_OF,
    )
    assert empty.returncode == 2 and "为免重复发信" in empty.stderr
    assert len(server.script.received) == count


def test_a_damaged_ledger_says_what_to_do_and_is_restored_from_its_backup(rules, tmp_path):
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    demo.make(rules, inbox, seed=2017)
    campaign_at(rules, inbox, outbox, state).run(AS_OF)
    before = json.loads((outbox / names.STATUS_JSON).read_text(encoding="utf-8"))
    (state / "ledger.sqlite").write_bytes(b"this is no longer a database" * 100)
    for wal in state.glob("ledger.sqlite-*"):
        wal.unlink()
    broken = cli("status", "--state", str(state), "--as-of", AS_OF)
    assert broken.returncode == 2 and "已损坏" in broken.stderr and "verify --rebuild" in broken.stderr
    assert "Traceback" not in broken.stderr and "DatabaseError" not in broken.stderr.split("(")[0]
    rebuilt = cli("verify", "--rebuild", "--state", str(state))
    assert rebuilt.returncode == 0 and "已用备份" in rebuilt.stdout and "全部一致" in rebuilt.stdout
    assert list(state.glob("ledger.sqlite.damaged-*"))
    after = json.loads(cli("status", "--state", str(state), "--as-of", AS_OF, "--json").stdout)
    assert after["rows"] == before["rows"]


def test_a_killed_final_leaves_no_edition_or_a_complete_one(rules, tmp_path):
    inbox = tmp_path / "inbox"
    demo.make(rules, inbox, seed=2017)
    outbox, state = tmp_path / "outbox", tmp_path / "state"
    args = ["run", "--inbox", str(inbox), "--outbox", str(outbox), "--state", str(state)]
    assert cli(*args, "--as-of", AS_OF).returncode == 0
    summary = outbox / names.SUMMARY_DIR
    for delay in (0.0, 0.3, 0.6, 0.9, 1.2, 1.8, 2.5):
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "pipeline",
                *args,
                "--as-of",
                FINAL_AS_OF,
                "--final",
                "--allow-missing",
                "测试",
            ],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(delay)
        process.send_signal(signal.SIGKILL)
        process.wait()
        editions = [
            p for p in summary.iterdir() if p.is_dir() and "终稿" in p.name and not p.name.startswith(".")
        ]
        for edition in editions:
            assert len(list(edition.iterdir())) == 3, edition  # complete, or not there at all
    assert cli(*args, "--as-of", FINAL_AS_OF, "--final", "--allow-missing", "测试").returncode == 0
    leftovers = [p for p in outbox.rglob(".*")]
    assert leftovers == []
    book = ledger.Ledger(state)
    recorded = [e["path"] for e in book.editions()]
    book.close()
    assert recorded and all(
        (outbox / path).is_dir() and len(list((outbox / path).iterdir())) == 3 for path in recorded
    )


def test_smtp_faults_end_within_the_run_deadline(rules, tmp_path):
    """A server that greets and then never answers: the first message waits for it, the others are left for
    the next run at once, and the whole sending ends within the deadline rules.yaml sets."""
    import dataclasses

    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)  # connections complete in the backlog; no greeting ever comes
        mute = dataclasses.replace(
            rules.mail,
            smtp_host="127.0.0.1",
            smtp_port=silent.getsockname()[1],
            tls="none",
            username="",
            send_seconds=3,
        )
        level, outbox, state = _feedback_site(rules, tmp_path, mute)
        start = time.monotonic()
        result = level.run(AS_OF, send=True)
        took = time.monotonic() - start
    assert took < 30, took
    assert set(result.messages) == {"tempfail"} and result.messages["tempfail"] >= 5
    book = ledger.Ledger(state)
    details = {r["detail"] for r in book.messages()}
    book.close()
    assert any("本次不再尝试其余邮件" in d for d in details)


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_an_old_ledger_is_brought_up_to_date_with_every_row_kept(tmp_path):
    """A ledger written by the previous version (submissions keyed by their bytes, no inode or ctime, no
    message bytes) opens, keeps every row, and gets the new columns."""
    state = tmp_path / "state"
    state.mkdir()
    with sqlite3.connect(state / "ledger.sqlite") as db:
        db.executescript("""
            CREATE TABLE files (path TEXT PRIMARY KEY, size INTEGER NOT NULL, mtime_ns INTEGER NOT NULL,
                sha256 TEXT NOT NULL, first_seen TEXT NOT NULL);
            CREATE TABLE submissions (sha256 TEXT PRIMARY KEY, file TEXT NOT NULL, path TEXT NOT NULL,
                size INTEGER NOT NULL, received TEXT NOT NULL, first_seen TEXT NOT NULL, kind TEXT, unit TEXT,
                item TEXT, form TEXT, version INTEGER, verdict TEXT, findings TEXT, "values" TEXT,
                explained INTEGER DEFAULT 0);
            CREATE TABLE messages (key TEXT PRIMARY KEY, kind TEXT NOT NULL, unit TEXT NOT NULL,
                recipient TEXT NOT NULL, sha256 TEXT, subject TEXT NOT NULL, eml TEXT NOT NULL,
                status TEXT NOT NULL, code INTEGER, detail TEXT, attempts INTEGER NOT NULL DEFAULT 0,
                updated TEXT NOT NULL);
            INSERT INTO files VALUES ('a.xlsx', 10, 1, 'abc', '2017-01-30T10:00:00+08:00');
            INSERT INTO submissions VALUES ('abc', 'a.xlsx', 'a.xlsx', 10, '2017-01-30T10:00:00+08:00',
                '2017-01-30T10:00:00+08:00', 'form', '460100', 'warmth', 'warmth', 1, 'accepted', '[]', '{}', 0);
            INSERT INTO messages VALUES ('feedback:x', 'feedback', '460100', 'a@example.org', 'abc', '主题',
                '邮件/a.eml', 'sent', 250, '', 1, '2017-01-30T10:00:00+08:00');
        """)
    book = ledger.Ledger(state)
    try:
        (sub,) = book.submissions()
        assert (sub.id, sub.sha256, sub.unit, sub.version) == ("abc", "abc", "460100", 1)
        (message,) = book.messages()
        assert message["status"] == "sent" and message["mime"] is None
        assert book.known_files() == {"a.xlsx": (10, 1, None, None)}
    finally:
        book.close()


# --- rules.yaml: what a hand edit can do --------------------------------------------------------------------


def test_a_key_written_twice_in_rules_yaml_is_refused_with_its_path(rules_text):
    from pipeline import checks

    twice = rules_text.replace(
        "  deadline: 2017-02-05T23:59:59\n",
        "  deadline: 2017-02-05T23:59:59\n  deadline: 2017-03-05T23:59:59\n",
        1,
    )
    with pytest.raises(checks.ConfigError) as refused:
        checks.loads(twice)
    assert refused.value.path == "campaign.deadline" and "写了两次" in refused.value.message


@pytest.mark.parametrize("deep", ["flow", "block"])
def test_rules_yaml_nested_far_too_deep_is_refused_in_words(rules_text, deep):
    from pipeline import checks

    if deep == "flow":
        extra = "shared:\n  deep: " + "[" * 10_000 + "]" * 10_000 + "\n"
    else:
        extra = (
            "shared:\n" + "".join("  " * (i + 1) + f"k{i}:\n" for i in range(200)) + "  " * 201 + "end: 1\n"
        )
    text = rules_text.replace("shared:\n", extra.replace("shared:\n", "shared:\n", 1) + "  x:\n", 1)
    with pytest.raises(checks.ConfigError) as refused:
        checks.loads(text)
    assert "嵌套" in refused.value.message and "Recursion" not in refused.value.message
    if deep == "block":
        assert refused.value.path.startswith("shared.deep") or refused.value.path.startswith("shared.k0")


def test_an_expression_of_a_megabyte_is_refused_with_the_rules_path(rules_text):
    from pipeline import checks

    huge = "visits.total.amount_goods <= " + " + ".join(["funds.fund_union"] * 60_000)
    text = rules_text.replace(
        "check: visits.total.amount_goods <= funds.fund_union + funds.fund_social", f"check: {huge}", 1
    )
    assert len(text) > 1_000_000
    with pytest.raises(checks.ConfigError) as refused:
        checks.loads(text)
    assert refused.value.path.startswith("rules[") and refused.value.path.endswith("check")
    assert "上限" in refused.value.message


def test_a_broken_rules_yaml_gives_its_message_through_the_cli_not_a_traceback(rules_text, tmp_path):
    (tmp_path / "rules.yaml").write_text(
        rules_text.replace(
            "  deadline: 2017-02-05T23:59:59\n", "  deadline: 2017-02-05T23:59:59\n  deadline: x\n", 1
        ),
        encoding="utf-8",
    )
    done = cli("status", "--rules", str(tmp_path / "rules.yaml"), "--state", str(tmp_path / "state"))
    assert done.returncode == 2 and "campaign.deadline" in done.stderr and "Traceback" not in done.stderr


def test_a_message_whose_fate_is_unknown_is_listed_and_resolved_by_staff(rules, tmp_path):
    """A run killed while talking to the server leaves its message "sending": the next run calls it
    unknown (it may have arrived), `pipeline mail --unknown` lists it, and staff resend it or mark it sent."""
    inbox, outbox, state = tmp_path / "inbox", tmp_path / "outbox", tmp_path / "state"
    demo.make(rules, inbox, seed=2017)
    level = campaign_at(rules, inbox, outbox, state)
    level.run(AS_OF)
    book = ledger.Ledger(state)
    first, second = (r["key"] for r in book.messages()[:2])
    book.set_messages([first, second], "sending", level.moment(AS_OF))  # as a run killed mid-send leaves them
    book.close()
    level.run(AS_OF)
    args = ["--state", str(state), "--rules", str(ROOT / "rules.yaml")]
    listed = cli("mail", "--unknown", *args)
    assert listed.returncode == 0 and "送达不明的邮件 2 封" in listed.stdout
    numbers = [
        line.split()[0] for line in listed.stdout.splitlines() if line.startswith("  ") and "@" in line
    ]
    done = cli("mail", "--resend", numbers[0], "--mark-sent", numbers[1], *args)
    assert done.returncode == 0 and "将重发" in done.stdout and "已标记为送达" in done.stdout
    book = ledger.Ledger(state)
    statuses = {r["key"]: r["status"] for r in book.messages()}
    book.close()
    assert sorted([statuses[first], statuses[second]]) == ["sent", "tempfail"]
    assert "送达不明的邮件 0 封" in cli("mail", "--unknown", *args).stdout
