"""The ledger: what a run stores is what later runs read back, from state folders of earlier versions too."""

from __future__ import annotations

import datetime as dt
import hashlib
import math

from pipeline.io.ledger import Ledger
from pipeline.model import Finding, Severity

CHINA = dt.timezone(dt.timedelta(hours=8))
RECEIVED = dt.datetime(2017, 1, 20, 9, tzinfo=CHINA)

# A 附件1's values as every version so far has stored them: keys in order, a blank number as null.
STORED = (
    '{"funds||fund_total": 12.5, "sign||date": "2017-01-20", "sign||leader": "王 芳", '
    '"visits|agri|households": 3, "visits|total|amount_total": null}'
)
VALUES = {
    ("funds", "", "fund_total"): 12.5,
    ("sign", "", "date"): "2017-01-20",
    ("sign", "", "leader"): "王 芳",
    ("visits", "agri", "households"): 3,
    ("visits", "total", "amount_total"): None,
}


def received(book: Ledger, name: str = "海口市总工会_附件1.xlsx") -> str:
    """A file recorded the way intake records it; its digest."""
    sha = hashlib.sha256(name.encode()).hexdigest()
    book.record_files([(name, (100, 0, 0, 0), sha, name, RECEIVED)], RECEIVED)
    return sha


def test_values_stored_by_an_earlier_version_read_back_as_they_were(tmp_path):
    book = Ledger(tmp_path)
    sha = received(book)
    with book.transaction() as db:
        db.execute(
            'UPDATE submissions SET kind = ?, unit = ?, item = ?, form = ?, verdict = ?, findings = ?, "values" = ? '
            "WHERE sha256 = ?",
            ("form", "460100", "warmth", "warmth", "accepted", "[]", STORED, sha),
        )
    book.close()
    (sub,) = Ledger(tmp_path).submissions()
    assert sub.values == VALUES
    assert list(sub.values) == list(VALUES)


def fields(verdict: str = "accepted", **more: object) -> dict[str, object]:
    """What checking found of a 附件1 of 海口市总工会."""
    return dict(
        kind="form", unit="460100", item="warmth", form="warmth", verdict=verdict, findings=[], **more
    )


def test_what_a_run_keeps_after_checking_is_what_the_next_run_reads(tmp_path):
    book = Ledger(tmp_path)
    accepted, rejected = received(book), received(book, "海口市总工会_附件1(修改).xlsx")
    # As normalisation hands them over: in the form's order, a blank number as NaN, a date as a date.
    values = {
        ("visits", "agri", "households"): 3,
        ("visits", "total", "amount_total"): math.nan,
        ("funds", "", "fund_total"): 12.5,
        ("sign", "", "leader"): "王 芳",
        ("sign", "", "date"): dt.date(2017, 1, 20),
    }
    finding = Finding(
        "R-sum",
        Severity.ERROR,
        "合计不等于各行之和",
        sheet="附件1",
        cell="C12",
        field="households",
        row="total",
    )
    book.record_checks(
        [
            (accepted, fields(values=values, explained=True)),
            (rejected, fields("rejected") | dict(findings=[finding])),
        ]
    )
    kept = book.submissions()
    again = Ledger(tmp_path).submissions()
    assert kept == again
    assert [list(s.values) for s in kept] == [list(s.values) for s in again]
    assert [s.version for s in kept] == [1, 2]
    (stored,) = book.db.execute('SELECT "values" FROM submissions WHERE sha256 = ?', (accepted,)).fetchone()
    assert stored == STORED  # what earlier versions wrote and read


def test_a_change_by_another_connection_after_checking_is_seen(tmp_path):
    book, other = Ledger(tmp_path), Ledger(tmp_path)
    sha = received(book)
    book.record_checks([(sha, fields(values={("funds", "", "fund_total"): 12.5}))])
    other.record_checks([(sha, fields("rejected"))])
    (sub,) = book.submissions()
    assert sub.verdict == "rejected" and sub.values == {}
