"""Deadline day: `pipeline run` writes the consolidation, final editions, and the 帮扶中心's roll-up."""

from __future__ import annotations

import os
from pathlib import Path

from typer.testing import CliRunner

from pipeline import demo
from pipeline.cli import app
from pipeline.io import ledger
from pipeline.io.outbox import SUMMARY_DIR
from pipeline.render import template
from pipeline.runs import check
from tests.conftest import campaign_at
from tests.test_batch import hashes

runner = CliRunner()
DRAFT_AS_OF = "2017-02-01T12:00"
FINAL_AS_OF = "2017-02-06T09:00"


def run(inbox: Path, outbox: Path, state: Path, *extra: str) -> str:
    result = runner.invoke(
        app, ["run", "--inbox", str(inbox), "--outbox", str(outbox), "--state", str(state), *extra]
    )
    assert result.exit_code == 0, result.output
    return result.output


def test_same_inbox_and_moment_give_byte_identical_consolidation(rules, tmp_path):
    inbox = tmp_path / "inbox"
    demo.make(rules, inbox, seed=3)
    for name in ("a", "b"):
        run(inbox, tmp_path / name / "out", tmp_path / name / "state", "--as-of", DRAFT_AS_OF)
    a, b = hashes(tmp_path / "a" / "out" / SUMMARY_DIR), hashes(tmp_path / "b" / "out" / SUMMARY_DIR)
    assert a == b and len(a) == 3 and all("草稿" in name for name in a)


def test_final_is_refused_before_the_deadline_and_numbered_after(rules, tmp_path):
    inbox, out, state = tmp_path / "inbox", tmp_path / "out", tmp_path / "state"
    demo.make(rules, inbox, seed=3)
    early = runner.invoke(
        app,
        [
            "run",
            "--inbox",
            str(inbox),
            "--outbox",
            str(out),
            "--state",
            str(state),
            "--as-of",
            DRAFT_AS_OF,
            "--final",
        ],
    )
    assert early.exit_code == 2 and "还没到截止时间" in early.output
    incomplete = runner.invoke(
        app,
        [
            "run",
            "--inbox",
            str(inbox),
            "--outbox",
            str(out),
            "--state",
            str(state),
            "--as-of",
            FINAL_AS_OF,
            "--final",
        ],
    )
    assert (
        incomplete.exit_code == 2
        and "材料不全,终稿未生成" in incomplete.output
        and "--allow-missing" in incomplete.output
    )
    assert not (out / SUMMARY_DIR / "终稿第1版").exists()
    run(
        inbox, out, state, "--as-of", FINAL_AS_OF, "--final", "--allow-missing", "个别单位因故缺报,已电话催报"
    )
    first = hashes(out / SUMMARY_DIR / "终稿第1版")
    assert len(first) == 3
    run(inbox, out, state, "--as-of", FINAL_AS_OF)  # a later plain run: a new draft, the final untouched
    run(inbox, out, state, "--as-of", "2017-02-07T09:00", "--final", "--allow-missing", "同上")
    assert hashes(out / SUMMARY_DIR / "终稿第1版") == first
    assert len(hashes(out / SUMMARY_DIR / "终稿第2版")) == 3
    assert [e["number"] for e in ledger.Ledger(state).editions()] == [1, 2]


def children_inbox(rules, inbox: Path) -> None:
    from tests.conftest import correct_values

    for i, unit in enumerate(rules.children("ZX")):
        form = rules.forms["warmth"]
        path = inbox / "2017-01-25" / template.file_name(unit, form)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(template.fill(rules, form, unit, correct_values(rules, "warmth", unit.code, seed=i)))
        os.utime(path, (1485309600,) * 2)  # 2017-01-25 10:00 +08:00


def test_rollup_for_the_help_center_passes_check_with_no_findings(rules, tmp_path):
    inbox, out, state = tmp_path / "zx-inbox", tmp_path / "zx-out", tmp_path / "zx-state"
    children_inbox(rules, inbox)
    output = run(
        inbox,
        out,
        state,
        "--as-of",
        DRAFT_AS_OF,
        "--for",
        "ZX",
        "--leader",
        "王海涛",
        "--preparer",
        "李秀英",
        "--phone",
        "0898-66553663",
    )
    assert "7/7 个单位" in output
    rollup = out / SUMMARY_DIR / template.file_name(rules.unit("ZX"), rules.forms["warmth"])
    (result,) = check.check_paths([rollup], rules)
    assert (result.unit, result.form, result.verdict, result.findings) == ("ZX", "warmth", "accepted", ())


def test_province_totals_do_not_count_the_help_centers_children_again(rules, tmp_path):
    def totals(inbox: Path, name: str):
        run(inbox, tmp_path / name / "out", tmp_path / name / "state", "--as-of", DRAFT_AS_OF)
        c = campaign_at(rules, inbox, tmp_path / name / "out", tmp_path / name / "state").consolidate(
            DRAFT_AS_OF
        )
        return c["by_unit"]

    plain = tmp_path / "plain"
    demo.make(rules, plain, seed=3)
    crowded = tmp_path / "crowded"
    demo.make(rules, crowded, seed=3)
    children_inbox(rules, crowded)  # the industry unions e-mail the province as well
    p, c = totals(plain, "p"), totals(crowded, "c")
    assert p.equals(c)
    assert p.iloc[-1]["households"] > 0  # the 全省合计 row is there and counts something
