"""The ledger: what a run stores is what later runs read back, from state folders of earlier versions too."""

from __future__ import annotations

import datetime as dt
import hashlib

from pipeline.ledger import Ledger

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
    book.record_files([(name, 100, 0, sha, name, RECEIVED)], RECEIVED)
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
