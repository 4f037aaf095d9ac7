"""The weekly run on a demo inbox: intake, ledger, versions, feedback files, status, and nothing lost."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pipeline import demo
from pipeline.cli import app
from pipeline.io import ledger
from pipeline.io import outbox as names
from pipeline.model import ItemState, Verdict
from pipeline.runs import editions, overlap
from pipeline.runs.context import Folders, locked, opened
from tests.conftest import campaign_at

ROOT = Path(__file__).resolve().parents[1]
AS_OF = "2017-02-01T12:00"
runner = CliRunner()


@pytest.fixture
def site(rules, tmp_path):
    """A staff member's folders: a demo inbox, an empty outbox and state."""
    inbox = tmp_path / "inbox"
    made = demo.make(rules, inbox, seed=2017)
    return inbox, tmp_path / "outbox", tmp_path / "state", made


def hashes(folder: Path) -> dict[str, str]:
    return {
        p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_cli(inbox, outbox, state, *extra):
    result = runner.invoke(
        app,
        [
            "run",
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--state",
            str(state),
            "--as-of",
            AS_OF,
            *extra,
        ],
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_run_checks_every_file_and_writes_feedback_for_units_with_problems(rules, site):
    inbox, outbox, state, made = site
    before = hashes(inbox)
    output = run_cli(inbox, outbox, state)
    assert f"新文件 {len(made.files)} 个" in output
    book = ledger.Ledger(state)
    subs = book.submissions()
    assert len(subs) == len(made.files)
    assert all(s.verdict for s in subs)
    # Every unit whose latest form has findings gets one message with its annotated workbook beside it.
    problem_units = set()
    latest = {}
    for s in subs:
        if s.kind == "form":
            key = (s.unit, s.item)
            if key not in latest or s.version > latest[key].version:
                latest[key] = s
    problem_units = {s.unit for s in latest.values() if s.findings}
    messages = book.messages()
    feedback = [m for m in messages if m["kind"] == "feedback"]
    assert {m["unit"] for m in feedback} == problem_units
    # Every latest version that counts (a form passed, a report received) gets one 回执, and nothing else does.
    counted = {
        s.id: s
        for s in subs
        if s.verdict in (Verdict.ACCEPTED, Verdict.RECEIVED)
        and s.version == max(x.version for x in subs if (x.unit, x.item) == (s.unit, s.item))
    }
    receipts = [m for m in messages if m["kind"] == "receipt"]
    assert sorted(m["sha256"] for m in receipts) == sorted(counted)
    assert len(feedback) + len(receipts) == len(messages)
    assert all(m["status"] == "written" for m in messages)
    emls = sorted((outbox / names.MAIL_DIR).glob("*.eml"))
    assert len(emls) == len(messages)
    annotated = sorted((outbox / names.FEEDBACK_DIR).rglob("*_校验结果.xlsx"))
    assert len(annotated) == len(feedback)
    # The inbox is byte-for-byte what it was.
    assert hashes(inbox) == before
    status = json.loads((outbox / names.STATUS_JSON).read_text(encoding="utf-8"))
    states = {(r["unit"], r["item"]): r["state_label"] for r in status["rows"]}
    for code, item in made.missing:
        assert states[(code, item)] == "未报送", (code, item)
    book.close()


def test_rerun_with_nothing_new_changes_nothing_and_sends_nothing(rules, site):
    inbox, outbox, state, _ = site
    run_cli(inbox, outbox, state)
    first_out, first_ledger = hashes(outbox), ledger.Ledger(state).dump()
    output = run_cli(inbox, outbox, state)
    assert "新文件 0 个" in output and "邮件" not in output.split("报送情况")[0].split("校验")[-1]
    assert hashes(outbox) == first_out
    assert ledger.Ledger(state).dump() == first_ledger


def mtimes(folder: Path) -> dict[str, int]:
    return {p.relative_to(folder).as_posix(): p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file()}


def test_rerun_with_nothing_new_does_not_rewrite_outputs_but_remakes_a_deleted_or_stale_one(rules, site):
    inbox, outbox, state, _ = site
    run_cli(inbox, outbox, state)
    first, first_times = hashes(outbox), mtimes(outbox)
    run_cli(inbox, outbox, state)
    assert mtimes(outbox) == first_times  # not even rewritten with the same bytes
    # Someone deletes the draft workbook, edits the status file: the next run puts both back.
    (workbook,) = (outbox / names.SUMMARY_DIR).glob("*汇总表*.xlsx")
    workbook.unlink()
    (outbox / names.STATUS_TXT).write_text("改过了", encoding="utf-8")
    run_cli(inbox, outbox, state)
    assert hashes(outbox) == first
    # A later moment changes the countdown in the status: the outputs are made again.
    runner.invoke(
        app,
        [
            "run",
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--state",
            str(state),
            "--as-of",
            "2017-02-03T12:00",
        ],
    )
    assert "距截止还有 2 天" in (outbox / names.STATUS_TXT).read_text(encoding="utf-8")


def test_same_bytes_under_another_name_are_the_same_submission(rules, site):
    inbox, outbox, state, made = site
    original = next(f.path for f in made.files if f.path.suffix == ".xlsx")
    copy = inbox / "转发" / ("转发:" + original.name)
    copy.parent.mkdir()
    copy.write_bytes(original.read_bytes())
    os.utime(copy, (original.stat().st_mtime + 60,) * 2)
    run_cli(inbox, outbox, state)
    book = ledger.Ledger(state)
    assert len(book.submissions()) == len(made.files)
    assert len(book.dump()["files"]) == len(made.files) + 1


def test_lock_and_hidden_files_are_passed_over(rules, site):
    inbox, outbox, state, made = site
    day = made.files[0].path.parent
    (day / "~$海口市总工会_附件1.xlsx").write_bytes(b"owner file")
    (day / ".~lock.海口市总工会_附件1.xlsx#").write_bytes(b"lock")
    (day / ".hidden.xlsx").write_bytes(b"hidden")
    output = run_cli(inbox, outbox, state)
    assert output.count("跳过") >= 3
    assert len(ledger.Ledger(state).submissions()) == len(made.files)


def test_corrected_resubmission_supersedes_the_rejected_file(rules, site):
    inbox, outbox, state, made = site
    first = next(f for f in made.files if f.note.startswith("第1版"))
    run_cli(inbox, outbox, state)
    result = runner.invoke(app, ["status", "--state", str(state), "--as-of", AS_OF, "--json"])
    rows = {(r["unit"], r["item"]): r for r in json.loads(result.stdout)["rows"]}
    row = rows[(first.unit, "warmth")]
    assert row["versions"] == 2 and row["version_used"] == 2 and row["state_label"] == "通过"
    versions = sorted(
        (s.version, s.verdict)
        for s in ledger.Ledger(state).submissions()
        if s.unit == first.unit and s.item == "warmth"
    )
    assert versions == [(1, "rejected"), (2, "accepted")]
    text = runner.invoke(app, ["status", "--state", str(state), "--as-of", AS_OF]).output
    assert "共2版" in text


def test_status_shows_the_older_version_in_use_when_the_newer_is_rejected(rules, site, fill):
    inbox, outbox, state, made = site
    run_cli(inbox, outbox, state)
    good = next(f for f in made.files if f.note == "填写正确" and f.item == "warmth")
    unit = rules.unit(good.unit)
    bad = fill(unit=unit.code, changes={("activities", "", "forums"): "见附件"}, name="更正.xlsx")
    target = inbox / "2017-01-31" / f"{unit.name}附件1更正.xlsx"
    target.parent.mkdir(exist_ok=True)
    target.write_bytes(bad.read_bytes())
    os.utime(target, (1485820800,) * 2)  # 2017-01-31 08:00 +08:00
    run_cli(inbox, outbox, state)
    rows = {(r.unit, r.item): r for r in campaign_at(rules, inbox, outbox, state).status(AS_OF).rows}
    row = rows[(unit.code, "warmth")]
    assert row.state == ItemState.FAILED and row.versions == 2 and row.version_used == 1
    assert "汇总暂用第1版" in row.note


def test_late_file_is_flagged_and_still_processed(rules, site, fill):
    inbox, outbox, state, _ = site
    late = inbox / "2017-02-08" / "三亚附件1补报.xlsx"
    late.parent.mkdir()
    late.write_bytes(fill(unit="460200", seed=9).read_bytes())
    os.utime(late, (1486526400,) * 2)  # 2017-02-08 12:00 +08:00
    runner.invoke(
        app,
        [
            "run",
            "--inbox",
            str(inbox),
            "--outbox",
            str(outbox),
            "--state",
            str(state),
            "--as-of",
            "2017-02-10T09:00",
        ],
    )
    rows = {
        (r.unit, r.item): r for r in campaign_at(rules, inbox, outbox, state).status("2017-02-10T09:00").rows
    }
    assert rows[("460200", "warmth")].late
    assert any(r.state == ItemState.OVERDUE for r in rows.values())


def test_a_second_run_while_one_holds_the_lock_is_refused(rules, site):
    inbox, outbox, state, _ = site
    with locked(state):
        result = runner.invoke(
            app, ["run", "--inbox", str(inbox), "--outbox", str(outbox), "--state", str(state)]
        )
    assert result.exit_code == 2
    assert "另一个 pipeline 正在运行" in result.output


def test_verify_finds_a_changed_archive_file(rules, site):
    inbox, outbox, state, _ = site
    run_cli(inbox, outbox, state)
    ok = runner.invoke(app, ["verify", "--state", str(state)])
    assert ok.exit_code == 0 and "全部一致" in ok.output
    with contextlib.closing(sqlite3.connect(state / "ledger.sqlite")) as db, db:
        db.execute(
            "UPDATE archive SET data = ? WHERE sha256 = (SELECT min(sha256) FROM archive)", (b"tampered",)
        )
    bad = runner.invoke(app, ["verify", "--state", str(state)])
    assert bad.exit_code == 1 and "存档内容已改变" in bad.output


def test_killed_run_is_completed_by_the_next_with_the_same_result(rules, tmp_path):
    inbox = tmp_path / "inbox"
    demo.make(rules, inbox, seed=11)
    command = [sys.executable, "-m", "pipeline", "run", "--inbox", str(inbox), "--as-of", AS_OF]

    def start(name):
        return subprocess.Popen(
            command
            + ["--outbox", str(tmp_path / name / "outbox"), "--state", str(tmp_path / name / "state")],
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    clean = start("clean")
    assert clean.wait(timeout=300) == 0
    victim = start("killed")
    deadline = time.time() + 120
    while time.time() < deadline and _archived(tmp_path / "killed" / "state") < 10:
        time.sleep(0.01)
    victim.send_signal(signal.SIGKILL)
    victim.wait()
    rerun = start("killed")
    assert rerun.wait(timeout=300) == 0
    assert (
        ledger.Ledger(tmp_path / "killed" / "state").dump()
        == ledger.Ledger(tmp_path / "clean" / "state").dump()
    )
    assert hashes(tmp_path / "killed" / "outbox") == hashes(tmp_path / "clean" / "outbox")


def test_a_federation_large_enough_for_the_workbooks_process_gets_the_same_files(rules, site, monkeypatch):
    """From WorkbookProcess.UNITS units on, the workbook is built by a second process started when the forms
    are read, while this one annotates, sums and writes the report: the files are those of a small run."""
    inbox, outbox, state, _ = site
    run_cli(inbox, outbox, state)
    started = []
    start = overlap.WorkbookProcess.start
    monkeypatch.setattr(overlap.WorkbookProcess, "UNITS", 1)
    monkeypatch.setattr(
        overlap.WorkbookProcess, "start", lambda self: (started.append(self.executor is None), start(self))[1]
    )
    large = outbox.parent / "large"
    run_cli(inbox, large / "outbox", large / "state")
    assert started[0] is True  # started, once the forms were read
    assert hashes(large / "outbox") == hashes(outbox)
    assert ledger.Ledger(large / "state").dump() == ledger.Ledger(state).dump()


def test_forms_checked_while_intake_keeps_them_give_what_checking_after_it_gives(rules, site, monkeypatch):
    """The workers start on each batch as soon as intake has read it; a run that checks only afterwards
    writes the same ledger and files, the same bytes sent twice under two names included."""
    inbox, outbox, state, _ = site
    first = sorted(inbox.rglob("*.xlsx"))[0]
    again = inbox / "转发" / f"转发_{first.name}"
    again.parent.mkdir()
    again.write_bytes(first.read_bytes())
    os.utime(again, (first.stat().st_mtime + 3600,) * 2)  # forwarded an hour later: the first name stays
    used = []
    results = overlap.EarlyCheck.results
    monkeypatch.setattr(overlap.EarlyCheck, "results", lambda self: used.append(results(self)) or used[-1])
    run_cli(inbox, outbox, state)
    assert len(used[0]) > 40 and (sha256(again), again.name) in used[0]  # checked while intake kept them
    monkeypatch.setattr(overlap.EarlyCheck, "check", lambda self, files: None)
    after = outbox.parent / "after"
    run_cli(inbox, after / "outbox", after / "state")
    assert used[1] == {}
    assert hashes(after / "outbox") == hashes(outbox)
    assert ledger.Ledger(after / "state").dump() == ledger.Ledger(state).dump()


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _archived(state: Path) -> int:
    """How many files a run has kept so far, as another program reading the ledger sees it."""
    try:
        with contextlib.closing(sqlite3.connect(f"file:{state / 'ledger.sqlite'}?mode=ro", uri=True)) as db:
            return int(db.execute("SELECT count(*) FROM archive").fetchone()[0])
    except sqlite3.Error:  # not created yet
        return 0


def _draft_workbook(outbox: Path) -> bytes:
    (path,) = (outbox / names.SUMMARY_DIR).glob("*汇总表(草稿).xlsx")
    return path.read_bytes()


def _drafts(
    aside: overlap.WorkbookProcess, rules, site, times: int = 1, kill: bool = False
) -> tuple[bytes, list[bytes]]:
    """(the draft workbook a run wrote, the same built again `times` times through `aside`), `kill`ing its
    process first."""
    inbox, outbox, state, _ = site
    run_cli(inbox, outbox, state)
    with opened(
        rules, Folders(inbox, outbox, state), campaign_at(rules, inbox, outbox, state).moment(AS_OF)
    ) as run:
        now = campaign_at(rules, inbox, outbox, state).status(AS_OF)
        aside.start()  # a run starts it from WorkbookProcess.UNITS units on; the demo has 21
        try:
            if kill:
                assert aside.executor is not None
                aside.executor.submit(os._exit, 1)  # the workbook's process dies
            made = [editions.started(run, now, aside)()[0] for _ in range(times)]
        finally:
            aside.close()
    return _draft_workbook(outbox), [data for m in made for path, data in m.items() if path.suffix == ".xlsx"]


def test_draft_workbook_made_by_the_second_process_is_the_one_this_process_makes(rules, site, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.runs.overlap")
    written, (there,) = _drafts(overlap.WorkbookProcess(), rules, site)
    assert there[:2] == b"PK" and there == written
    assert "building it in this one" not in caplog.text


def test_workbook_is_made_here_when_the_second_process_dies(rules, site, caplog):
    caplog.set_level(logging.INFO, logger="pipeline.runs.overlap")
    written, (here,) = _drafts(overlap.WorkbookProcess(), rules, site, kill=True)
    assert here == written
    assert "building it in this one" in caplog.text


def test_a_draft_built_again_gets_its_workbook_here_without_a_warning(rules, site, caplog):
    """The second process builds one workbook; a draft built again (a message refused while sending changed
    the status) is built in this process, silently, with the same bytes."""
    caplog.set_level(logging.INFO, logger="pipeline.runs.overlap")
    written, made = _drafts(overlap.WorkbookProcess(), rules, site, times=2)
    assert made == [written, written]
    assert "building it in this one" not in caplog.text


def test_submissions_are_loaded_again_when_another_connection_changed_them(rules, site):
    inbox, outbox, state, _ = site
    run_cli(inbox, outbox, state)
    reader, writer = ledger.Ledger(state), ledger.Ledger(state)
    first = reader.submissions()
    assert reader.submissions(values=False) == first  # unchanged: the same objects again
    changed = first[0]
    writer.record_checks(
        [
            (
                changed.sha256,
                dict(
                    kind=changed.kind,
                    unit=changed.unit,
                    item=changed.item,
                    form=changed.form,
                    verdict="rejected",
                    findings=[],
                ),
            )
        ]
    )
    again = {s.sha256: s for s in reader.submissions()}
    assert again[changed.sha256].verdict == "rejected" and changed.verdict != "rejected"
