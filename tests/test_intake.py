"""Intake: files still being copied, and files whose names are not UTF-8 (the GBK names Chinese Windows unzip
tools and mail clients give)."""

from __future__ import annotations

import email
import email.policy
import hashlib
import io
import json
import os
from pathlib import Path

import openpyxl
import pytest

from pipeline import demo
from pipeline.campaign import layout
from pipeline.io import intake, ledger
from pipeline.io import outbox as outbox_names
from pipeline.render import template
from tests.conftest import campaign_at

AS_OF = "2017-02-01T12:00"
JAN_31 = 1485820800  # 2017-01-31 08:00 +08:00, before AS_OF and after every demo file


@pytest.fixture
def site(rules, tmp_path):
    """A staff member's folders: a demo inbox, an empty outbox and state."""
    inbox = tmp_path / "inbox"
    made = demo.make(rules, inbox, seed=2017)
    return inbox, tmp_path / "outbox", tmp_path / "state", made


def to_gbk(path: Path, name: str) -> bytes:
    """Rename a file in its folder to `name` in GB18030 bytes, as an unzip tool on Chinese Windows does."""
    target = os.path.join(os.fsencode(path.parent), name.encode("gb18030"))
    os.rename(os.fsencode(path), target)
    return target


def raw_tree(folder: Path) -> dict[bytes, str]:
    """Every file's raw on-disk path and the sha256 of its bytes."""
    out = {}
    for root, _, files in os.walk(os.fsencode(folder)):
        for name in files:
            path = os.path.join(root, name)
            with open(path, "rb") as handle:
                out[path] = hashlib.sha256(handle.read()).hexdigest()
    return out


def hashes(folder: Path) -> dict[str, str]:
    return {
        os.fsencode(p.relative_to(folder)).decode("utf-8"): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def without_identity(rules, data: bytes) -> bytes:
    """A filled form whose unit is only in its file name: no _meta sheet, 填报单位 left blank, one bad cell."""
    form = rules.forms["warmth"]
    wb = openpyxl.load_workbook(io.BytesIO(data))
    del wb[template.META_SHEET]
    ws = wb[form.sheet]
    lay = layout.compute(form)
    ws[lay.unit_name_cell] = None
    ws[lay.slot("activities", "", "forums").cell] = "见附件"
    out = io.BytesIO()
    wb.save(out)
    return out.getvalue()


def run(rules, inbox, outbox, state):
    return campaign_at(rules, inbox, outbox, state).run(AS_OF)


def test_gbk_named_files_are_checked_under_their_chinese_names_and_the_inbox_is_left_as_it_is(rules, site):
    inbox, outbox, state, made = site
    form = next(f for f in made.files if f.unit == "460100" and f.item == "warmth")
    report = next(f for f in made.files if f.unit == "460200" and f.path.suffix == ".docx")
    stray = next(f for f in made.files if f.note.startswith("产业工会"))
    # A second version of 海口's 附件1 that says who sent it only in its (GBK) file name, with a mistake.
    correction = form.path.parent.parent / "2017-01-31" / "更正.xlsx"
    correction.parent.mkdir()
    correction.write_bytes(without_identity(rules, form.path.read_bytes()))
    os.utime(correction, (JAN_31, JAN_31))
    to_gbk(form.path, "海口市总工会附件1.xlsx")
    to_gbk(report.path, "三亚市总工会送温暖工作报告.docx")
    to_gbk(stray.path, "海南省教育工会附件1.xlsx")
    to_gbk(correction, "海口市总工会附件1更正.xlsx")
    before = raw_tree(inbox)

    first = run(rules, inbox, outbox, state)

    assert len(first.intake.new) == len(made.files) + 1 and not first.intake.skipped
    book = ledger.Ledger(state)
    by_name = {s.file: s for s in book.submissions()}
    assert by_name["海口市总工会附件1.xlsx"].unit == "460100"
    assert by_name["海口市总工会附件1.xlsx"].verdict in ("accepted", "rejected")
    assert by_name["三亚市总工会送温暖工作报告.docx"].unit == "460200"
    assert by_name["三亚市总工会送温暖工作报告.docx"].verdict == "received"
    corrected = by_name["海口市总工会附件1更正.xlsx"]
    assert (corrected.unit, corrected.form, corrected.version, corrected.verdict) == (
        "460100",
        "warmth",
        2,
        "rejected",
    )
    # What staff and units see carries the Chinese names.
    status = json.loads((outbox / outbox_names.STATUS_JSON).read_text(encoding="utf-8"))
    assert [s["file"] for s in status["stray"]] == ["海南省教育工会附件1.xlsx"]
    assert (
        outbox / outbox_names.FEEDBACK_DIR / "海口市总工会" / "海口市总工会附件1更正_校验结果.xlsx"
    ).is_file()
    (eml,) = [m["eml"] for m in book.messages() if m["unit"] == "460100" and m["kind"] == "feedback"]
    message = email.message_from_bytes((outbox / eml).read_bytes(), policy=email.policy.default)
    assert "海口市总工会附件1更正.xlsx" in message.get_body(("plain",)).get_content()
    assert [a.get_filename() for a in message.iter_attachments()] == ["海口市总工会附件1更正_校验结果.xlsx"]
    first_ledger, first_out = book.dump(), hashes(outbox)
    book.close()
    assert raw_tree(inbox) == before

    second = run(rules, inbox, outbox, state)

    assert second.intake.new == [] and second.intake.unchanged == second.intake.seen == len(made.files) + 1
    assert not second.checked
    book = ledger.Ledger(state)
    assert book.dump() == first_ledger
    book.close()
    assert hashes(outbox) == first_out
    assert raw_tree(inbox) == before


def test_a_gbk_name_and_a_utf8_name_that_read_the_same_are_both_kept(rules, site, fill):
    inbox, outbox, state, made = site
    folder = inbox / "2017-01-31"
    folder.mkdir()
    same = "三亚市总工会附件1.xlsx"
    (folder / same).write_bytes(fill(unit="460200", seed=3).read_bytes())
    (folder / "other.xlsx").write_bytes(fill(unit="460200", seed=4).read_bytes())
    to_gbk(folder / "other.xlsx", same)
    for path in folder.iterdir():
        os.utime(path, (JAN_31, JAN_31))

    first = run(rules, inbox, outbox, state)

    assert len(first.intake.new) == len(made.files) + 2
    book = ledger.Ledger(state)
    assert sum(s.file == same for s in book.submissions()) == 2
    assert len(book.dump()["files"]) == len(made.files) + 2
    book.close()
    second = run(rules, inbox, outbox, state)
    assert second.intake.new == [] and second.intake.unchanged == len(made.files) + 2


def test_a_name_in_neither_utf8_nor_gbk_is_shown_with_replacement_marks(rules, site):
    inbox, outbox, state, made = site
    odd = os.path.join(os.fsencode(made.files[0].path.parent), b"\xff\x80" + "附件.xlsx".encode("gb18030"))
    os.rename(os.fsencode(made.files[0].path), odd)

    first = run(rules, inbox, outbox, state)

    assert len(first.intake.new) == len(made.files)
    names = {s.file for s in ledger.Ledger(state).submissions()}
    assert "\ufffd\ufffd附件.xlsx" in names


@pytest.mark.parametrize(
    ("raw", "shown"),
    [
        ("2017-01-20/海口市总工会附件1.xlsx".encode(), "2017-01-20/海口市总工会附件1.xlsx"),
        ("2017-01-20/海口市总工会附件1.xlsx".encode("gb18030"), "2017-01-20/海口市总工会附件1.xlsx"),
        ("转发/".encode() + "三亚.docx".encode("gbk"), "转发/三亚.docx"),
    ],
)
def test_each_part_of_an_inbox_path_is_shown_in_its_own_encoding(raw, shown):
    assert intake.readable(os.fsdecode(raw)) == shown


def test_a_file_still_being_copied_is_left_for_the_next_run_and_the_others_are_taken(rules, tmp_path, fill):
    import datetime as dt
    import threading
    import time

    inbox = tmp_path / "inbox"
    inbox.mkdir()
    for unit in ("460100", "460200"):
        done = fill(unit=unit)
        (inbox / done.name).write_bytes(done.read_bytes())
        os.utime(inbox / done.name, (JAN_31, JAN_31))
    data = fill(unit="469002").read_bytes()
    copying = inbox / "琼海市总工会附件1.xlsx"
    step = len(data) // 12 + 1
    copying.write_bytes(data[:step])  # the copy has just begun, and goes on while intake looks

    def copy_on() -> None:
        with copying.open("ab") as out:
            for start in range(step, len(data), step):
                time.sleep(0.15)
                out.write(data[start : start + step])
                out.flush()

    finish = threading.Thread(target=copy_on)
    finish.start()
    book = ledger.Ledger(tmp_path / "state")
    later = dt.datetime.now(dt.timezone(dt.timedelta(hours=8))) + dt.timedelta(hours=1)
    first = intake.take_in(book, inbox, later, 20 * 2**20)
    finish.join()
    assert len(first.new) == 2
    assert [(s.path, s.reason) for s in first.skipped] == [(copying.name, "文件正在写入,下次运行时再处理")]
    time.sleep(0.1)
    second = intake.take_in(book, inbox, later, 20 * 2**20)  # the copy is complete now
    assert len(second.new) == 1 and not second.skipped
    assert book.bytes_of(second.new[0]) == data
    book.close()


def one_sent(tmp_path: Path, fill) -> tuple[Path, Path, bytes, ledger.Ledger]:
    """An inbox holding one filled form, and an empty ledger: (inbox, the form, its bytes, the ledger)."""
    inbox = tmp_path / "inbox"
    inbox.mkdir()
    sent = fill(unit="460100")
    data = sent.read_bytes()
    (inbox / sent.name).write_bytes(data)
    os.utime(inbox / sent.name, (JAN_31, JAN_31))
    return inbox, sent, data, ledger.Ledger(tmp_path / "state")


def take(book: ledger.Ledger, inbox: Path) -> intake.Intake:
    import datetime as dt

    return intake.take_in(
        book, inbox, dt.datetime(2017, 2, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=8))), 20 * 2**20
    )


def test_an_archive_copy_damaged_before_it_was_recorded_is_not_trusted(rules, tmp_path, fill):
    """A power cut after an earlier version copied a file and before it recorded it could leave a copy of the
    right size holding zeros in the archive folder: the bytes are kept again, and those are what is read."""
    inbox, sent, data, book = one_sent(tmp_path, fill)
    damaged = book.archive_path(hashlib.sha256(data).hexdigest())
    damaged.parent.mkdir(parents=True)
    damaged.write_bytes(bytes(len(data)))
    taken = take(book, inbox)
    assert len(taken.new) == 1
    assert book.bytes_of(taken.new[0]) == data and book.verify() == []
    book.close()


def test_files_archived_one_by_one_by_an_earlier_version_are_still_read_and_verified(rules, tmp_path, fill):
    """State folders from before the archive moved into the ledger keep each file under archive/."""
    inbox, sent, data, book = one_sent(tmp_path, fill)
    (sha,) = take(book, inbox).new
    old = book.archive_path(sha)  # what the earlier version left: the file, no row
    old.parent.mkdir(parents=True)
    old.write_bytes(data)
    book.db.execute("DELETE FROM archive")
    assert (book.bytes_of(sha), book.kept_bytes([sha]), book.verify()) == (data, {sha: data}, [])
    old.write_bytes(data[:-1] + b"!")
    assert [p.split("(")[0] for p in book.verify()] == [f"存档内容已改变:{sent.name}"]
    old.unlink()
    assert (book.bytes_of(sha), book.kept_bytes([sha])) == (None, {})
    assert [p.split("(")[0] for p in book.verify()] == [f"存档缺失:{sent.name}"]
    book.close()


def test_the_same_file_saved_under_several_names_is_one_submission_from_its_first_arrival(
    rules, tmp_path, fill
):
    """A county forwards its form twice, or saves the attachment under another name: one submission, shown
    under the name and time of the copy that came first, whichever run or order finds them."""
    import datetime as dt

    data = fill(unit="460100").read_bytes()
    inbox = tmp_path / "inbox"
    day = 86400

    def put(name: str, mtime: int) -> None:
        path = inbox / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        os.utime(path, (mtime, mtime))

    put("a_转发/海口附件1.xlsx", JAN_31)  # walked first, arrived last
    put("b_原件/海口市总工会附件1.xlsx", JAN_31 - day)
    book = ledger.Ledger(tmp_path / "state")
    as_of = dt.datetime(2017, 2, 1, 12, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    (sha,) = intake.take_in(book, inbox, as_of, 20 * 2**20).new
    (sub,) = book.submissions(values=False)
    assert (sub.sha256, sub.file, sub.received.timestamp()) == (sha, "海口市总工会附件1.xlsx", JAN_31 - day)
    put("c_旧邮件/海口附件1(1).xlsx", JAN_31 - 2 * day)  # found by a later run, yet sent earlier still
    put("d_又发一次/海口附件1.xlsx", JAN_31)
    assert intake.take_in(book, inbox, as_of, 20 * 2**20).new == []
    (sub,) = book.submissions(values=False)
    assert (sub.file, sub.received.timestamp()) == ("海口附件1(1).xlsx", JAN_31 - 2 * day)
    assert len(book.known_files()) == 4
    book.close()
