"""rules.yaml loads into the 2017 campaign, and each kind of mistake in it is refused with its YAML path
and a Chinese message that says what is wrong."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import openpyxl
import pytest
import yaml

from pipeline import checks
from pipeline.campaign import config

CHINESE = re.compile(r"[\u4e00-\u9fff]")
UNIT_COLUMNS = ("code", "name", "kind", "reports_to", "items", "email", "aliases")


def edited(rules_text: str, change: Callable[[dict[str, Any]], None]) -> str:
    data = yaml.safe_load(rules_text)
    change(data)
    return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)


def replaced(rules_text: str, old: str, new: str) -> str:
    assert rules_text.count(old) == 1, f"{old!r} should occur exactly once in rules.yaml"
    return rules_text.replace(old, new)


def refused(text: str) -> config.ConfigError:
    with pytest.raises(config.ConfigError) as info:
        checks.loads(text)
    error = info.value
    assert CHINESE.search(error.message), error.message
    assert str(error) == (f"{error.path}: {error.message}" if error.path else error.message)
    return error


def index_of(entries: list[dict[str, Any]], **match: str) -> int:
    return next(i for i, e in enumerate(entries) if all(e.get(k) == v for k, v in match.items()))


# --- the real file ------------------------------------------------------------------------------------


def test_real_rules_yaml_loads_the_2017_campaign(rules: config.Rules) -> None:
    assert len(rules.units) == 28
    assert len(rules.units_owing_form("center")) == 21
    assert len(rules.units_owing_form("warmth")) == 28
    assert [u.code for u in rules.children("ZX")] == ["CY01", "CY02", "CY03", "CY04", "CY05", "CY06", "XT01"]
    assert rules.unit("460100").name == "海口市总工会"
    assert set(rules.forms) == {"warmth", "center"}
    assert rules.warnings == ()


def test_deadline_is_end_of_day_in_shanghai(rules: config.Rules) -> None:
    deadline = rules.campaign.deadline
    assert deadline == dt.datetime(2017, 2, 5, 23, 59, 59, tzinfo=ZoneInfo("Asia/Shanghai"))
    assert deadline.isoformat() == "2017-02-05T23:59:59+08:00"
    assert rules.campaign.issue_date == dt.date(2016, 12, 23)


def test_sha256_is_the_digest_of_the_file(rules: config.Rules) -> None:
    assert rules.sha256 == hashlib.sha256(rules.source.read_bytes()).hexdigest()


# --- mistakes in rules.yaml ---------------------------------------------------------------------------


def test_unknown_field_type_names_its_yaml_path(rules_text: str) -> None:
    text = replaced(
        rules_text,
        "{code: migrant_workers, label: 慰问困难农民工, unit: 人, type: count",
        "{code: migrant_workers, label: 慰问困难农民工, unit: 人, type: int32",
    )
    error = refused(text)
    assert error.path == "forms.warmth.sections.visits.fields[2].type"
    assert '未知类型 "int32"' in error.message
    assert "count" in error.message and "money" in error.message  # says what would do


@pytest.mark.parametrize(
    ("rule_id", "check", "wrong"),
    [
        ("W-archived", "households_archivd <= households", "households_archivd"),
        ("W-goods", "visits.total.amount_good <= funds.fund_union + funds.fund_social", "amount_good"),
    ],
)
def test_rule_naming_a_missing_field_names_the_rule(
    rules_text: str, rule_id: str, check: str, wrong: str
) -> None:
    rules_list = yaml.safe_load(rules_text)["rules"]
    n = index_of(rules_list, id=rule_id)

    def change(data: dict[str, Any]) -> None:
        data["rules"][n]["check"] = check

    error = refused(edited(rules_text, change))
    assert error.path == f"rules[{n}].check"
    assert f'"{wrong}' in error.message
    assert "字段" in error.message


def test_duplicate_unit_code_names_the_second_unit(rules_text: str) -> None:
    units = yaml.safe_load(rules_text)["units"]
    first, second = index_of(units, code="CY01"), index_of(units, code="CY02")

    def change(data: dict[str, Any]) -> None:
        data["units"][second]["code"] = "CY01"

    error = refused(edited(rules_text, change))
    assert error.path == f"units[{second}].code"
    assert '单位代码 "CY01" 重复' in error.message
    assert f"第 {first + 1} 项" in error.message


def test_unit_reporting_to_an_unknown_parent_is_refused(rules_text: str) -> None:
    units = yaml.safe_load(rules_text)["units"]
    k = index_of(units, code="CY03")

    def change(data: dict[str, Any]) -> None:
        data["units"][k]["reports_to"] = "ZY"

    error = refused(edited(rules_text, change))
    assert error.path == f"units[{k}].reports_to"
    assert '"ZY"' in error.message
    assert "不在单位列表中" in error.message


def test_row_code_used_twice_names_the_second_row(rules_text: str) -> None:
    text = replaced(rules_text, "{code: construction, label: 建筑业}", "{code: utility, label: 建筑业}")
    error = refused(text)
    assert error.path == "forms.warmth.sections.visits.rows[3].code"
    assert '行代码 "utility" 重复' in error.message


@pytest.mark.parametrize(
    ("old", "new", "path", "allowed"),
    [
        ("  timezone: Asia/Shanghai\n", "  time_zone: Asia/Shanghai\n", "campaign.time_zone", "timezone"),
        (
            "unit: 天, type: count, max: 45}",
            "unit: 天, type: count, maximum: 45}",
            "forms.center.sections.archive.fields[4].maximum",
            "max",
        ),
    ],
)
def test_misspelt_key_is_named_with_the_keys_allowed(
    rules_text: str, old: str, new: str, path: str, allowed: str
) -> None:
    error = refused(replaced(rules_text, old, new))
    assert error.path == path
    wrong = path.rsplit(".", 1)[1]
    assert f'未知的键 "{wrong}"' in error.message
    assert allowed in error.message


def test_missing_issue_date_is_named(rules_text: str) -> None:
    def change(data: dict[str, Any]) -> None:
        del data["campaign"]["issue_date"]

    error = refused(edited(rules_text, change))
    assert error.path == "campaign.issue_date"
    assert "缺少" in error.message


def test_unit_without_email_is_named(rules_text: str) -> None:
    k = index_of(yaml.safe_load(rules_text)["units"], code="YP")

    def change(data: dict[str, Any]) -> None:
        del data["units"][k]["email"]

    error = refused(edited(rules_text, change))
    assert error.path == f"units[{k}].email"
    assert "缺少" in error.message


def test_bad_yaml_syntax_gives_the_line(rules_text: str) -> None:
    # A tab used to indent, the commonest way a hand edit breaks YAML.
    text = replaced(
        rules_text, "  issuer: 海南省总工会\n", "  issuer: 海南省总工会\n\tdepartment: 法律保障工作部\n"
    )
    line = text.splitlines().index("\tdepartment: 法律保障工作部") + 1
    error = refused(text)
    assert error.path == ""
    assert f"rules.yaml 第 {line} 行" in error.message
    assert "制表符" in error.message


def test_deadline_before_issue_date_is_a_warning(rules_text: str) -> None:
    # The notice itself printed 2016年2月5日: the loader accepts it but says so.
    text = replaced(rules_text, "deadline: 2017-02-05T23:59:59", "deadline: 2016-02-05T23:59:59")
    loaded = checks.loads(text)
    assert len(loaded.warnings) == 1
    warning = loaded.warnings[0]
    assert "campaign.deadline" in warning
    assert "2016-02-05" in warning and "2016-12-23" in warning
    assert CHINESE.search(warning)


# --- mistakes in a rule: each kind parses its own keys (pipeline.checks) ------------------------------


def rule_edited(rules_text: str, rule_id: str, change: Callable[[dict[str, Any]], None]) -> tuple[str, int]:
    n = index_of(yaml.safe_load(rules_text)["rules"], id=rule_id)
    return edited(rules_text, lambda data: change(data["rules"][n])), n


def test_unknown_rule_kind_names_the_kinds(rules_text: str) -> None:
    text, n = rule_edited(rules_text, "W-goods", lambda rule: rule.update(kind="sum"))
    error = refused(text)
    assert error.path == f"rules[{n}].kind"
    assert '未知规则类型 "sum"' in error.message and "row_total" in error.message


def test_key_of_another_kind_is_refused_with_the_keys_of_this_one(rules_text: str) -> None:
    text, n = rule_edited(rules_text, "W-archived", lambda rule: rule.update(places=2))
    error = refused(text)
    assert error.path == f"rules[{n}].places"
    assert '未知的键 "places"' in error.message and "each_row" in error.message


def test_message_quoting_what_the_rule_cannot_fill_is_refused(rules_text: str) -> None:
    text, n = rule_edited(
        rules_text, "W-goods", lambda rule: rule.update(message="{cell} 慰问品 {amount} 万元")
    )
    error = refused(text)
    assert error.path == f"rules[{n}].message"
    assert "{amount}" in error.message and "{left}" in error.message


def test_message_with_an_unpaired_brace_is_refused(rules_text: str) -> None:
    text, n = rule_edited(rules_text, "R-required", lambda rule: rule.update(message="{cell {label}未填写"))
    error = refused(text)
    assert error.path == f"rules[{n}].message"
    assert "花括号" in error.message


def test_let_names_may_be_quoted_in_the_message(rules: config.Rules) -> None:
    (per_head,) = [r for r in rules.rules if r.id == "W-per-head"]
    assert "{per_head}" in per_head.message and "{in_yuan}" in per_head.message


def test_row_total_without_its_form_is_refused(rules_text: str) -> None:
    text, n = rule_edited(rules_text, "W-total", lambda rule: rule.pop("form"))
    error = refused(text)
    assert error.path == f"rules[{n}].form"
    assert "必须指明报表" in error.message


def test_row_total_of_a_section_without_a_total_row_is_refused(rules_text: str) -> None:
    text, n = rule_edited(rules_text, "W-total", lambda rule: rule.update(section="funds"))
    error = refused(text)
    assert error.path == f"rules[{n}].section"
    assert "没有分行" in error.message


def test_check_naming_no_field_is_refused(rules_text: str) -> None:
    text, n = rule_edited(rules_text, "C-duty", lambda rule: rule.update(check="1 <= 2"))
    error = refused(text)
    assert error.path == f"rules[{n}].check"
    assert "没有引用任何字段" in error.message


def test_the_campaign_alone_loads_without_compiling_the_rules(rules_text: str) -> None:
    """config is the campaign layer's loader; checks.loads is the one that refuses a bad rule."""
    text, _ = rule_edited(rules_text, "W-goods", lambda rule: rule.update(kind="sum"))
    assert config.loads(text).rules[index_of(yaml.safe_load(text)["rules"], id="W-goods")].kind == "sum"


# --- limits on untrusted files ------------------------------------------------------------------------


def test_limits_default_when_the_section_or_a_key_is_left_out(rules_text: str) -> None:
    without = checks.loads(edited(rules_text, lambda data: data.pop("limits", None)))
    assert without.limits == config.Limits()
    assert (without.limits.max_file_mb, without.limits.worker_seconds) == (20, 20)
    partial = checks.loads(edited(rules_text, lambda data: data.update(limits={"max_file_mb": 5})))
    assert partial.limits == config.Limits(max_file_mb=5)
    assert partial.limits.max_bytes == 5 * 2**20


def test_real_rules_yaml_states_the_default_limits(rules: config.Rules) -> None:
    assert rules.limits == config.Limits()


@pytest.mark.parametrize(
    ("value", "words"), [(-1, "大于 0"), (0, "大于 0"), ("二十", "应为数字"), (".inf", "大于 0")]
)
def test_bad_file_size_limit_names_limits_max_file_mb(rules_text: str, value: object, words: str) -> None:
    text = edited(rules_text, lambda data: data.update(limits={"max_file_mb": value}))
    error = refused(text.replace("max_file_mb: '.inf'", "max_file_mb: .inf"))
    assert error.path == "limits.max_file_mb"
    assert words in error.message


def test_worker_memory_too_small_to_start_is_refused(rules_text: str) -> None:
    error = refused(edited(rules_text, lambda data: data.update(limits={"worker_memory_mb": 64})))
    assert error.path == "limits.worker_memory_mb"
    assert "256 MB" in error.message


def test_misspelt_limit_is_named(rules_text: str) -> None:
    error = refused(edited(rules_text, lambda data: data.update(limits={"max_file_size": 5})))
    assert error.path == "limits.max_file_size"
    assert "max_file_mb" in error.message


# --- units kept in a separate contact list ------------------------------------------------------------


def unit_rows(rules_text: str) -> list[dict[str, str]]:
    """The inline units as staff would keep them in a sheet: lists joined with 、."""
    rows = []
    for u in yaml.safe_load(rules_text)["units"]:
        rows.append({k: "、".join(u[k]) if isinstance(u[k], list) else str(u[k]) for k in UNIT_COLUMNS})
    return rows


def write_units(path: Path, rows: list[dict[str, str]]) -> None:
    if path.suffix == ".csv":
        # Excel's "CSV UTF-8" starts with a byte-order mark.
        with path.open("w", encoding="utf-8-sig", newline="") as handle:
            writer = csv.DictWriter(handle, fieldnames=UNIT_COLUMNS)
            writer.writeheader()
            writer.writerows(rows)
        return
    wb = openpyxl.Workbook()
    ws = wb.active
    assert ws is not None
    ws.append(list(UNIT_COLUMNS))
    for r in rows:
        # A person typing 460100 into Excel gets a number, not text.
        ws.append([int(r[k]) if k == "code" and r[k].isdigit() else r[k] for k in UNIT_COLUMNS])
    wb.save(path)


def rules_with_units_file(tmp_path: Path, rules_text: str, name: str) -> Path:
    def change(data: dict[str, Any]) -> None:
        del data["units"]
        data["units_file"] = name

    path = tmp_path / "rules.yaml"
    path.write_text(edited(rules_text, change), encoding="utf-8")
    return path


@pytest.mark.parametrize("name", ["units.csv", "units.xlsx"])
def test_units_from_a_contact_list_match_the_inline_units(
    tmp_path: Path, rules: config.Rules, rules_text: str, name: str
) -> None:
    write_units(tmp_path / name, unit_rows(rules_text))
    loaded = checks.load(rules_with_units_file(tmp_path, rules_text, name))
    assert loaded.units == rules.units
    assert len(loaded.children("ZX")) == 7


def test_code_typed_as_a_number_in_xlsx_comes_back_as_text(tmp_path: Path, rules_text: str) -> None:
    write_units(tmp_path / "units.xlsx", unit_rows(rules_text))
    assert openpyxl.load_workbook(tmp_path / "units.xlsx").active["A2"].value == 460100  # really a number
    loaded = checks.load(rules_with_units_file(tmp_path, rules_text, "units.xlsx"))
    assert loaded.units[0].code == "460100"
    assert loaded.unit("460100").name == "海口市总工会"


def test_sha256_changes_when_the_units_file_changes(tmp_path: Path, rules_text: str) -> None:
    rows = unit_rows(rules_text)
    write_units(tmp_path / "units.csv", rows)
    rules_path = rules_with_units_file(tmp_path, rules_text, "units.csv")
    before = checks.load(rules_path)
    rows[0]["email"] = "haikou.union@example.org"
    write_units(tmp_path / "units.csv", rows)
    after = checks.load(rules_path)
    assert after.unit("460100").email == "haikou.union@example.org"
    assert after.sha256 != before.sha256


@pytest.mark.parametrize("name", ["units.csv", "units.xlsx"])
def test_bad_row_in_units_file_names_the_file_and_row(tmp_path: Path, rules_text: str, name: str) -> None:
    rows = unit_rows(rules_text)
    k = index_of(rows, code="469006")  # the 5th unit: row 6 of the sheet, under the header
    rows[k]["email"] = "wanning-at-example.org"
    write_units(tmp_path / name, rows)
    with pytest.raises(config.ConfigError) as info:
        checks.load(rules_with_units_file(tmp_path, rules_text, name))
    error = info.value
    assert name in error.path
    assert f"第{k + 2}行" in error.path
    assert error.path.endswith(".email")
    assert '电子邮箱 "wanning-at-example.org" 格式不对' in error.message
