"""One cell in, one value and its findings out: what people type into the forms, and what it becomes.

Normalisation tells issues; the rule of that kind words them (`told`, with the shipped wording unless a
test gives its own), as `checks.prepare` does with the rules of rules.yaml."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest

from pipeline.campaign import config
from pipeline.campaign.config import Field
from pipeline.checks import Ruleset
from pipeline.checks.kinds import DEFAULTS, CellRule, TypeRule
from pipeline.model import Finding, Severity
from pipeline.submission.normalize import Normalized, fmt_number, normalize

FIELDS = {
    "户": Field("households", "慰问困难职工", "count", unit="户", min=0.0),
    "人次": Field("persons", "帮扶人次", "count", unit="人次", min=0.0),
    "天": Field("duty_days", "两节期间值班天数", "count", unit="天", min=0.0, max=45.0),
    "万元": Field("amount_total", "慰问金额合计", "money", unit="万元", min=0.0),
    "text": Field("leader", "单位负责人", "text"),
    "phone": Field("phone", "联系电话", "phone"),
    "date": Field("date", "填报日期", "date"),
}
ISSUE = dt.date(2016, 12, 23)
TODAY = dt.date(2017, 2, 3)


def cell(raw: object, kind: str, **kw: object) -> Normalized:
    return normalize(raw, FIELDS[kind], sheet="送温暖统计表", cell="E7", **kw)  # type: ignore[arg-type]


def told(result: Normalized, rules: dict[str, CellRule] | None = None) -> list[Finding]:
    """The findings of a cell's issues, worded by `rules` (by kind) or the shipped wording."""
    speakers = {**DEFAULTS, **(rules or {})}
    return [speakers[issue.kind].word(issue) for issue in result.issues]


CASES = [
    # blanks and "nothing happened" are 0, never an error
    (None, "户", 0, None),
    ("", "户", 0, None),
    ("  \u3000", "户", 0, None),
    ("无", "户", 0, None),
    ("-", "户", 0, None),
    ("—", "户", 0, None),
    ("——", "万元", 0.0, None),
    ("–", "户", 0, None),
    ("/", "户", 0, None),
    ("／", "万元", 0.0, None),
    ("空", "万元", 0.0, None),
    # numbers, numbers stored as text, full-width forms, thousands separators
    (12, "户", 12, None),
    (12.0, "户", 12, None),
    ("12", "户", 12, None),
    (" 12 ", "户", 12, None),
    ("'12", "户", 12, None),
    ("１２３", "户", 123, None),
    ("１，２３４", "户", 1234, None),
    ("1,234", "户", 1234, None),
    ("1，234", "户", 1234, None),
    ("1 234", "户", 1234, None),
    ("12.0", "户", 12, None),
    ("１２３．５", "万元", 123.5, None),
    ("1,234.50", "万元", 1234.5, None),
    (3, "万元", 3.0, None),
    (3.25, "万元", 3.25, None),
    # the column's own unit
    ("12户", "户", 12, None),
    ("12 户", "户", 12, None),
    ("3人次", "人次", 3, None),
    ("3.5万元", "万元", 3.5, None),
    ("3.5万", "万元", 3.5, None),
    # another unit
    ("35000元", "万元", None, "R-type"),
    ("3千元", "万元", None, "R-type"),
    ("5人", "户", None, "R-type"),
    ("3人", "人次", None, "R-type"),
    # text that is not a number
    ("见附件", "户", None, "R-type"),
    ("约50", "户", None, "R-type"),
    ("50左右", "户", None, "R-type"),
    ("12.3.4", "万元", None, "R-type"),
    ("十二", "户", None, "R-type"),
    ("1,23", "户", None, "R-type"),
    ("50%", "户", None, "R-type"),
    (True, "户", None, "R-type"),
    (False, "万元", None, "R-type"),
    (dt.datetime(2017, 1, 2), "户", None, "R-type"),
    (dt.date(2017, 1, 2), "万元", None, "R-type"),
    (dt.time(12, 30), "户", None, "R-type"),
    (dt.timedelta(hours=3), "万元", None, "R-type"),
    (float("nan"), "万元", None, "R-type"),
    # whole numbers, signs and bounds
    (12.5, "户", 12.5, None),  # bounds and whole numbers: judged by the schema, see test_validate
    ("12.5", "户", 12.5, None),
    (-3, "户", -3, None),
    ("－3", "户", -3, None),
    (-0.5, "万元", -0.5, None),
    (45, "天", 45, None),
    (46, "天", 46, None),
    ("60天", "天", 60, None),
    # money decimals: rounded half up, with a warning
    (12.345, "万元", 12.35, "R-decimals"),
    ("12.345", "万元", 12.35, "R-decimals"),
    (2.675, "万元", 2.68, "R-decimals"),
    (1.005, "万元", 1.01, "R-decimals"),
    ("12.3400", "万元", 12.34, None),
    # text
    (" 张三 ", "text", "张三", None),
    ("", "text", None, None),
    (None, "text", None, None),
    (12.0, "text", "12", None),
    (3.5, "text", "3.5", None),
    (1234, "text", "1234", None),
    # phones
    ("66553663", "phone", "0898-66553663", None),
    (66553663, "phone", "0898-66553663", None),
    ("0898-66553663", "phone", "0898-66553663", None),
    ("0898 6655 3663", "phone", "0898-66553663", None),
    ("(0898)66553663", "phone", "0898-66553663", None),
    ("（0898）66553663", "phone", "0898-66553663", None),
    ("0898—66553663", "phone", "0898-66553663", None),
    ("０８９８－６６５５３６６３", "phone", "0898-66553663", None),
    (89866553663, "phone", "0898-66553663", None),
    ("0898-66553663转8012", "phone", "0898-66553663转8012", None),
    ("0898-66553663-8012", "phone", "0898-66553663转8012", None),
    ("13812345678", "phone", "13812345678", None),
    ("138 1234 5678", "phone", "13812345678", None),
    ("138-1234-5678", "phone", "13812345678", None),
    ("+86 138 1234 5678", "phone", "13812345678", None),
    (13812345678.0, "phone", "13812345678", None),
    ("13812345678.0", "phone", "13812345678", None),
    ("66553663/13812345678", "phone", "0898-66553663、13812345678", None),
    ("66553663 13812345678", "phone", "0898-66553663、13812345678", None),
    (None, "phone", None, None),
    (" ", "phone", None, None),
    ("12345", "phone", None, "R-required"),
    ("6655366", "phone", None, "R-required"),
    ("010-12345678", "phone", None, "R-required"),
    ("12812345678", "phone", None, "R-required"),
    ("电话见报告", "phone", None, "R-required"),
    (True, "phone", None, "R-required"),
    # dates
    (42755, "date", dt.date(2017, 1, 20), None),
    (42755.5, "date", dt.date(2017, 1, 20), None),
    ("42755", "date", dt.date(2017, 1, 20), None),
    (20170120, "date", dt.date(2017, 1, 20), None),
    ("20170120", "date", dt.date(2017, 1, 20), None),
    (dt.datetime(2017, 1, 20, 10, 30), "date", dt.date(2017, 1, 20), None),
    (dt.date(2017, 1, 20), "date", dt.date(2017, 1, 20), None),
    ("2017年1月20日", "date", dt.date(2017, 1, 20), None),
    ("2017 年 1 月 20 日", "date", dt.date(2017, 1, 20), None),
    ("２０１７年１月２０日", "date", dt.date(2017, 1, 20), None),
    ("2017-1-20", "date", dt.date(2017, 1, 20), None),
    ("2017.1.20", "date", dt.date(2017, 1, 20), None),
    ("2017/01/20", "date", dt.date(2017, 1, 20), None),
    ("2017-01-20", "date", dt.date(2017, 1, 20), None),
    ("2017-01-20 10:30:00", "date", dt.date(2017, 1, 20), None),
    ("二〇一七年一月二十日", "date", dt.date(2017, 1, 20), None),
    ("二〇一七年元月二十日", "date", dt.date(2017, 1, 20), None),
    (None, "date", None, None),
    ("", "date", None, None),
    ("某天", "date", None, "R-required"),
    ("2017-2-30", "date", None, "R-required"),
    ("2017-1/20", "date", None, "R-required"),
    ("17-1-20", "date", None, "R-required"),
    (2017, "date", None, "R-required"),
    (True, "date", None, "R-required"),
    (dt.time(9, 0), "date", None, "R-required"),
]


@pytest.mark.parametrize(("raw", "kind", "expected", "rule"), CASES, ids=[f"{c[1]}:{c[0]!r}" for c in CASES])
def test_what_people_type_becomes(raw: object, kind: str, expected: object, rule: str | None) -> None:
    result = cell(raw, kind)
    assert result.value == expected
    assert type(result.value) is type(expected)
    assert [f.rule for f in told(result)] == ([rule] if rule else [])


def test_fullwidth_digits_are_accepted() -> None:
    assert cell("１２３", "户") == Normalized(123)
    assert cell("１，２３４．５０", "万元") == Normalized(1234.5)


def test_blank_numeric_cell_is_zero_without_finding() -> None:
    assert cell(None, "户") == Normalized(0)
    assert cell("", "万元") == Normalized(0.0)


def test_text_in_count_cell_names_cell_and_text() -> None:
    (finding,) = told(cell("约50", "户"))
    assert finding.message == "E7 慰问困难职工(户)应填整数,实际填写“约50”。请只填写数字,没有发生的填 0"
    assert (finding.rule, finding.severity, finding.sheet, finding.cell, finding.field, finding.value) == (
        "R-type",
        Severity.ERROR,
        "送温暖统计表",
        "E7",
        "households",
        "约50",
    )


def test_tabular_cell_is_named_by_its_row() -> None:
    result = cell("约50", "户", row="agri", row_label="农、林、牧、渔业")
    (finding,) = told(result)
    assert finding.row == "agri"
    assert finding.message.startswith("E7 农、林、牧、渔业 慰问困难职工(户)应填整数")


def test_yuan_in_wanyuan_column_suggests_converted_value() -> None:
    result = normalize("35000元", FIELDS["万元"], sheet="送温暖统计表", cell="F9")
    assert result.value is None
    (finding,) = told(result)
    assert finding.message == "F9 慰问金额合计(万元)应填数字,实际填写“35000元”。本栏单位为万元,应填 3.50"
    assert told(cell("3千元", "万元"))[0].message.endswith("本栏单位为万元,应填 0.30")


def test_other_unit_names_the_columns_unit() -> None:
    (finding,) = told(cell("5人", "户"))
    assert finding.message.endswith("本栏单位为户,请只填写数字")


def test_date_typed_into_numeric_cell_is_an_error() -> None:
    (finding,) = told(cell(dt.datetime(2017, 1, 2), "户"))
    assert finding.value == "2017-01-02"
    assert "被识别成了日期" in finding.message


def test_money_with_three_decimals_is_rounded_half_up_with_warning() -> None:
    result = normalize(12.345, FIELDS["万元"], sheet="送温暖统计表", cell="E8")
    assert result.value == 12.35
    (finding,) = told(result)
    assert (finding.rule, finding.severity) == ("R-decimals", Severity.WARNING)
    assert finding.message == "E8 慰问金额合计(万元) 12.345 超过两位小数,已按 12.35 计算"


def test_float_noise_from_formulas_is_not_reported() -> None:
    assert cell(0.1 + 0.2, "万元") == Normalized(0.3)
    assert cell(1.1 + 2.2, "万元") == Normalized(3.3)  # 3.3000000000000003
    assert cell(12.000000000000002, "户") == Normalized(12)


def test_places_is_honoured() -> None:
    result = cell(1.2345, "万元", places=3)
    assert result.value == 1.235
    assert told(result)[0].message.endswith("1.2345 超过两位小数,已按 1.235 计算")
    assert cell(1.234, "万元", places=3) == Normalized(1.234)


def test_formula_without_value_asks_to_open_and_save() -> None:
    result = cell(None, "户", formula_without_value=True)
    assert result.value is None
    (finding,) = told(result)
    assert finding.rule == "R-type"
    assert finding.message.endswith(
        "是公式但没有计算结果(文件可能由程序生成),请用 Excel 或 WPS 打开后保存再报送"
    )
    assert told(cell(None, "date", formula_without_value=True))[0].rule == "R-type"


def test_unrecognised_phone_says_what_is_accepted() -> None:
    result = normalize("12345", FIELDS["phone"], sheet="送温暖统计表", cell="C30")
    (finding,) = told(result)
    assert finding.message == "C30 联系电话“12345”无法识别:请填写座机(可带区号0898)或11位手机号"


def test_area_code_comes_from_the_caller() -> None:
    assert cell("010-62345678", "phone", area_code="010") == Normalized("010-62345678")


def test_unrecognised_date_shows_the_format() -> None:
    (finding,) = told(cell("某天", "date"))
    assert finding.message == "E7 填报日期“某天”无法识别,请按 2017-1-20 的格式填写"


def test_date_before_issue_date_is_an_error() -> None:
    (finding,) = told(cell("2016-01-20", "date", issue_date=ISSUE, run_date=TODAY))
    assert (finding.rule, finding.message) == ("R-required", "E7 填报日期 2016-01-20 早于发文日期 2016-12-23")


def test_date_after_run_date_is_an_error() -> None:
    (finding,) = told(cell("2017-03-01", "date", issue_date=ISSUE, run_date=TODAY))
    assert finding.message == "E7 填报日期 2017-03-01 晚于今天(2017-02-03)"


def test_date_on_issue_or_run_date_is_accepted() -> None:
    assert cell(ISSUE, "date", issue_date=ISSUE, run_date=TODAY) == Normalized(ISSUE)
    assert cell(TODAY, "date", issue_date=ISSUE, run_date=TODAY) == Normalized(TODAY)


def test_fmt_number() -> None:
    assert fmt_number(12, FIELDS["户"]) == "12"
    assert fmt_number(12.0, FIELDS["户"]) == "12"
    assert fmt_number(12.5, FIELDS["万元"]) == "12.50"
    assert fmt_number(2.675, FIELDS["万元"]) == "2.68"
    assert fmt_number(-0.001, FIELDS["万元"]) == "0.00"
    assert fmt_number(1.2345, FIELDS["万元"], places=3) == "1.235"
    assert fmt_number(float("nan"), FIELDS["万元"]) == "nan"


def test_default_rules_match_rules_yaml(rules: config.Rules) -> None:
    book = Ruleset.of(rules)
    for kind, default in DEFAULTS.items():
        for form in rules.forms:
            shipped = book.speaking(kind, form)
            assert shipped is not default  # rules.yaml declares it
            ours = (
                default.rule.id,
                default.rule.severity,
                default.rule.message,
                getattr(default, "places", None),
            )
            assert ours == (
                shipped.rule.id,
                shipped.rule.severity,
                shipped.rule.message,
                getattr(shipped, "places", None),
            )


def test_rules_yaml_wording_is_used_when_given() -> None:
    rule = replace(
        DEFAULTS["type"].rule,
        id="T-1",
        severity=Severity.WARNING,
        message="{cell}:{row}/{label} 不对({value})",
    )
    reworded = TypeRule(rule)
    result = cell("约50", "户", row="agri", row_label="农业")
    (finding,) = told(result, {"type": reworded})
    assert (finding.rule, finding.severity, finding.message) == (
        "T-1",
        Severity.WARNING,
        "E7:农业/慰问困难职工(户) 不对(约50)",
    )
    # kinds the caller did not give keep the shipped wording
    assert told(cell(12.345, "万元"), {"type": reworded})[0].rule == "R-decimals"
