"""Turn one cell, as python-calamine read it, into the value every later check and the consolidation use.

Reading a workbook hands each filled cell here once; what a person unambiguously meant becomes a number,
string or date, and everything else becomes an issue naming the cell: which kind of rule speaks of it
(`type`, `decimals` or `required`), what was typed and the particulars. pipeline.checks words issues into
findings with the rule of that kind in rules.yaml; nothing here knows a rule. `submission` does it for every
cell of a read submission, in the worker that read it.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from functools import lru_cache
from typing import Any, NamedTuple

from pipeline.campaign import layout
from pipeline.campaign.config import Field, Form
from pipeline.model import F_STRUCTURE, Cell, Key, Read, Severity

Value = float | int | str | dt.date | None


@dataclass(frozen=True, slots=True)
class Issue:
    """What a person should be told about one cell, before a rule of rules.yaml words it.

    `kind` names the kind of rule that speaks: "type" (not the kind of value the column takes), "decimals"
    (money rounded) or "required" (a phone or date that does not parse). `params` are the particulars a
    message may quote: `expected` and `hint`, `rounded`, or `problem`.
    """

    kind: str
    field: Field
    sheet: str
    cell: str  # A1
    row: str  # row code; "" for a single value
    row_label: str
    shown: str  # the cell as the person typed it
    params: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class Normalized:
    """A cell's value and what is worth telling the user about it.

    `value` is None for a blank text, phone or date cell and for any cell with a `type` or `required`
    issue: such a cell has no usable value, so later rules skip it instead of piling up follow-on errors.
    Blank count and money cells are 0. A `decimals` issue keeps the corrected value.
    """

    value: Value
    issues: tuple[Issue, ...] = ()


# --- character folding -------------------------------------------------------------------------------

# Chinese input methods produce full-width forms (１２３．５, １，２３４, －); WPS and copy-paste bring in
# assorted dashes and spaces. One translation table maps them to ASCII before any pattern is tried.
_FOLD_MAP: dict[int, int | str | None] = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)}
_FOLD_MAP.update({0x3000: " ", 0x00A0: " ", 0x2007: " ", 0x202F: " "})
_FOLD_MAP.update(
    {c: "-" for c in (0x2010, 0x2011, 0x2012, 0x2013, 0x2014, 0x2015, 0x2212, 0x2E3A, 0xFE58, 0xFE63)}
)
_FOLD_MAP.update({c: None for c in (0x200B, 0x200C, 0x200D, 0xFEFF)})  # invisible, pasted from web pages
_FOLD = str.maketrans(_FOLD_MAP)

# --- numbers -----------------------------------------------------------------------------------------

# Read as "nothing happened": the notice says to fill 0, but these are what people type instead.
_NIL = frozenset({"无", "空", "/", "//"})
_DASHES_RE = re.compile(r"-+")

# A number, optionally signed, with consistent thousands separators (1,234 or 1 234, never mixed, groups
# of exactly three so that 1,23 is not silently read as 123), then an optional unit of measure. The
# leading apostrophe is Excel's "store as text" marker when a file went through CSV.
_NUMBER_RE = re.compile(
    r"'?\s*(?P<num>[+-]?\s*(?:\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d{1,3}(?: \d{3})+(?:\.\d+)?|\d+(?:\.\d*)?|\.\d+))"
    r"\s*(?P<unit>[^\d\s.,+-][^\d]*?)?\s*"
)
_NUM_JUNK_RE = re.compile(r"[\s,]")

# A unit a person may write instead of the column's own, meaning the same thing.
_UNIT_ALIASES: Mapping[str, tuple[str, ...]] = {"万元": ("万",), "人": ("名",), "天": ("日",)}
# Money units in 元, so 35000元 in a 万元 column can come with the converted value.
_MONEY_SCALE: Mapping[str, int] = {
    "元": 1,
    "块": 1,
    "千元": 1000,
    "万元": 10000,
    "万": 10000,
    "亿元": 10**8,
    "亿": 10**8,
}
# Units of measure that make "5人 in a 户 column" a wrong unit rather than stray text.
_KNOWN_UNITS = frozenset(
    {
        "户",
        "人",
        "名",
        "位",
        "人次",
        "次",
        "家",
        "件",
        "天",
        "日",
        "个",
        "场",
        "项",
        "所",
        "张",
        "份",
        "期",
        "小时",
    }
) | frozenset(_MONEY_SCALE)

# Formula results carry binary noise (0.1 + 0.2 = 0.30000000000000004); below this relative distance a
# float is taken as the short decimal it stands for, silently.
_FLOAT_NOISE = 1e-9

_QUANTUM = {p: Decimal(1).scaleb(-p) for p in range(0, 7)}


def _quantum(places: int) -> Decimal:
    return _QUANTUM.get(places) or Decimal(1).scaleb(-places)


_ZERO_COUNT = Normalized(0)
_ZERO_MONEY = Normalized(0.0)
_BLANK = Normalized(None)

# --- dates -------------------------------------------------------------------------------------------

_EXCEL_EPOCH = dt.date(1899, 12, 30)  # serial 1 = 1900-01-01, allowing for Excel's fictitious 1900-02-29
# Serials of five digits (1927-05-18 to 2173-10-14): a 2017 or 6 in a date cell is not a date anyone meant.
_MIN_SERIAL, _MAX_SERIAL = 10000, 99999
_DATE_RE = re.compile(
    r"(?P<y>\d{4})\s*(?:年\s*(?P<m1>\d{1,2})\s*月\s*(?P<d1>\d{1,2})\s*[日号]?|(?P<sep>[-./])\s*(?P<m2>\d{1,2})\s*(?P=sep)\s*(?P<d2>\d{1,2}))"
    r"(?:(?:\s+|T)\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"
)
_DIGITS_DATE_RE = re.compile(r"\d+(?:\.0*)?")
_CN_DIGITS = {
    "〇": 0,
    "零": 0,
    "○": 0,
    "O": 0,
    "0": 0,
    "一": 1,
    "二": 2,
    "三": 3,
    "四": 4,
    "五": 5,
    "六": 6,
    "七": 7,
    "八": 8,
    "九": 9,
    "元": 1,
    "正": 1,
}  # 元月/正月: January
_CN_DATE_RE = re.compile(
    r"(?P<y>[〇零○O0一二三四五六七八九]{4})\s*年\s*(?P<m>[元正一二三四五六七八九十]{1,2})\s*月\s*(?P<d>[一二三四五六七八九十]{1,3})\s*[日号]?"
)
_DATE_FORMAT_HINT = "请按 2017-1-20 的格式填写"

# --- phones ------------------------------------------------------------------------------------------

_PHONE_SEP_RE = re.compile(r"[\s\-().\[\]]+")
_PHONE_LIST_RE = re.compile(r"\s*(?:[/、,;]|或)\s*")
_PHONE_EXT_RE = re.compile(r"(?P<main>.+?)\s*(?:转|分机|ext\.?|x)\s*(?P<ext>\d{1,6})", re.IGNORECASE)
_PHONE_DASH_EXT_RE = re.compile(r"(?P<main>.*\d)\s*-\s*(?P<ext>\d{1,5})")
_MOBILE_RE = re.compile(r"(?:\+?86|0086)?(1[3-9]\d{9})")


@lru_cache(maxsize=8)
def _landline_re(area_code: str) -> re.Pattern[str]:
    # Local numbers are eight digits and never start with 0 or 1 (those are area codes and mobiles).
    return re.compile(rf"(?:{re.escape(area_code)})?([2-9]\d{{7}})")


# --- issues, before they know where they are -----------------------------------------------------------


class _Said(NamedTuple):
    kind: str  # as Issue.kind
    shown: str
    params: Mapping[str, str]


def normalize(
    raw: object,
    field: Field,
    *,
    sheet: str,
    cell: str,
    row: str = "",
    row_label: str = "",
    formula_without_value: bool = False,
    issue_date: dt.date | None = None,
    run_date: dt.date | None = None,
    places: int = 2,
    area_code: str = "0898",
) -> Normalized:
    """Normalise one cell of `field`; `row`/`row_label` locate it in a tabular section.

    `places` is how many decimals money keeps (the `decimals` rule's `places`); `area_code` is the one
    landline area code a phone may carry.
    """
    if formula_without_value:
        shown = raw.strip() if isinstance(raw, str) and raw.strip() else "公式"
        said = _Said(
            "type",
            shown,
            {
                "expected": _EXPECTED.get(field.type, "数值"),
                "hint": "该单元格是公式但没有计算结果(文件可能由程序生成),请用 Excel 或 WPS 打开后保存再报送",
            },
        )
        return _located(None, (said,), field, sheet, cell, row, row_label)

    kind = field.type
    if kind == "count" or kind == "money":
        # Fast path: nearly every filled cell is a plain number already within bounds.
        cls = type(raw)
        if cls is float or cls is int:
            result = _number(raw, field, places)  # type: ignore[arg-type]
        elif raw is None:
            return _ZERO_COUNT if kind == "count" else _ZERO_MONEY
        else:
            result = _numeric_cell(raw, field, places)
    elif kind == "text":
        return Normalized(_text(raw))
    elif kind == "phone":
        result = _phone(raw, area_code)
    elif kind == "date":
        result = _date(raw, issue_date, run_date)
    else:
        raise ValueError(f"unknown field type {kind!r}")

    if isinstance(result, Normalized):
        return result
    value, told = result
    return _located(value, told, field, sheet, cell, row, row_label)


def fmt_number(value: float | int | Decimal, field: Field, places: int = 2) -> str:
    """A number as messages show it: `12` in a count column, `12.50` for money (rounded half up)."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # a caller's NaN for an unreadable cell must not break the message about another
    if field.type == "count" and value == int(value):
        return str(int(value))
    d = (
        value
        if isinstance(value, Decimal)
        else Decimal(value)
        if isinstance(value, int)
        else Decimal(repr(value))
    )
    q = d.quantize(_quantum(places), rounding=ROUND_HALF_UP)
    return f"{abs(q) if q == 0 else q:f}"  # never "-0.00"


# --- the field types ---------------------------------------------------------------------------------

_EXPECTED = {"count": "整数", "money": "数字", "text": "文字", "phone": "电话号码", "date": "日期"}
_Result = Normalized | tuple[Value, tuple[_Said, ...]]


def _type_error(field: Field, shown: str, hint: str, expected: str = "") -> tuple[Value, tuple[_Said, ...]]:
    return None, (_Said("type", shown, {"expected": expected or _EXPECTED[field.type], "hint": hint}),)


def _numeric_cell(raw: object, field: Field, places: int) -> _Result:
    """Everything in a count or money cell that is not already an int or float."""
    if isinstance(raw, str):
        return _numeric_text(raw, field, places)
    if isinstance(raw, bool):  # before int: bool is an int subclass
        return _type_error(field, as_typed(raw), "请只填写数字")
    if isinstance(raw, dt.date):  # datetime included: someone typed 1-2 and the spreadsheet made a date
        return _type_error(
            field,
            as_typed(raw),
            "单元格被识别成了日期(可能输入了“1-2”之类的内容),请把单元格格式设为“数值”后重新填写",
        )
    if isinstance(raw, dt.time | dt.timedelta):
        return _type_error(field, as_typed(raw), "单元格被识别成了时间,请把单元格格式设为“数值”后重新填写")
    if isinstance(raw, int | float):  # subclasses of int/float from other readers
        return _number(raw, field, places)
    return _type_error(field, as_typed(raw), "请只填写数字")


def _numeric_text(raw: str, field: Field, places: int) -> _Result:
    shown = raw.strip()
    s = raw.translate(_FOLD).strip()
    if not s or s in _NIL or _DASHES_RE.fullmatch(s):
        return _ZERO_COUNT if field.type == "count" else _ZERO_MONEY
    m = _NUMBER_RE.fullmatch(s)
    if m is None:
        return _type_error(field, shown, "请只填写数字,没有发生的填 0")
    number = Decimal(_NUM_JUNK_RE.sub("", m["num"]))
    unit = m["unit"]
    if unit and unit != field.unit and unit not in _UNIT_ALIASES.get(field.unit, ()):
        column = field.unit
        if unit in _MONEY_SCALE and column in _MONEY_SCALE:
            converted = number * _MONEY_SCALE[unit] / _MONEY_SCALE[column]
            return _type_error(
                field, shown, f"本栏单位为{column},应填 {fmt_number(converted, field, places)}"
            )
        if unit in _KNOWN_UNITS and column:
            return _type_error(field, shown, f"本栏单位为{column},请只填写数字")
        return _type_error(field, shown, "请只填写数字,没有发生的填 0")
    return _number(number, field, places, shown)


def _number(x: float | int | Decimal, field: Field, places: int, shown: str | None = None) -> _Result:
    """A number already read, as the value it stands for; `shown` is the typed text if any.

    Bounds and whole numbers are not judged here: the pandera schema built from rules.yaml does that,
    once for every submission of the batch. Only rounding to `places` decimals is told here.
    """
    if isinstance(x, float) and not math.isfinite(x):
        return _type_error(field, shown or as_typed(x), "请只填写数字")
    if field.type == "count":
        if isinstance(x, int):
            return Normalized(x)
        if isinstance(x, float) and (x.is_integer() or abs(x - round(x)) <= _FLOAT_NOISE * max(1.0, abs(x))):
            return Normalized(round(x))
        if isinstance(x, Decimal) and x == x.to_integral_value():
            return Normalized(int(x))
        return Normalized(float(x))  # a fraction of a person: the schema's whole-number check reports it
    if isinstance(x, int):
        return Normalized(float(x))
    if isinstance(x, float):
        r = round(x, places)
        if r == x or abs(r - x) <= _FLOAT_NOISE * max(1.0, abs(x)):
            return Normalized(r + 0.0)  # + 0.0 turns -0.0 into 0.0
        d = Decimal(repr(x))  # the shortest decimal that round-trips, i.e. what the cell displays
    else:
        d = x
    q = d.quantize(_quantum(places), rounding=ROUND_HALF_UP)
    if q == d:
        return Normalized(float(d) + 0.0)
    issue = _Said("decimals", shown or f"{d:f}", {"rounded": fmt_number(q, field, places)})
    return float(q), (issue,)


def _text(raw: object) -> str | None:
    if raw is None:
        return None
    if isinstance(raw, str):
        return raw.strip() or None
    return as_typed(raw)


def _phone(raw: object, area_code: str) -> _Result:
    if raw is None:
        return _BLANK
    shown = as_typed(raw)
    if isinstance(raw, str):
        text = raw.translate(_FOLD).strip()
        if not text:
            return _BLANK
        if re.fullmatch(r"\d+\.0+", text):  # a number that went through CSV as 13812345678.0
            text = text.split(".")[0]
        phone = _phone_text(text, area_code)
    elif isinstance(raw, int | float) and not isinstance(raw, bool) and float(raw).is_integer():
        digits = str(int(raw))
        # A number cell drops the leading 0 of the area code: 089866553663 arrives as 89866553663.
        lost = area_code[1:]
        if area_code.startswith("0") and digits.startswith(lost) and len(digits) == len(lost) + 8:
            digits = "0" + digits
        phone = _one_phone(digits, area_code)
    else:
        phone = None
    if phone is None:
        problem = f"“{shown}”无法识别:请填写座机(可带区号{area_code})或11位手机号"
        return None, (_Said("required", shown, {"problem": problem}),)
    return Normalized(phone)


def _phone_text(text: str, area_code: str) -> str | None:
    """One phone, or several separated by / 、 , ; 或 (or only spaces, when that is the sole reading)."""
    phone = _one_phone(text, area_code)
    if phone is not None:
        return phone
    for parts in (_PHONE_LIST_RE.split(text), text.split()):
        if len(parts) > 1:
            phones = [_one_phone(p, area_code) for p in parts if p]
            if phones and all(phones):
                return "、".join(phones)  # type: ignore[arg-type]
    return None


def _one_phone(text: str, area_code: str) -> str | None:
    ext = ""
    m = _PHONE_EXT_RE.fullmatch(text)
    if m:
        text, ext = m["main"], m["ext"]
    number = _bare_phone(text, area_code)
    if number is None and not ext:
        # 0898-66553663-8012: a trailing dash group is an extension, but only after a complete landline.
        m = _PHONE_DASH_EXT_RE.fullmatch(text)
        if m:
            number = _bare_phone(m["main"], area_code)
            if number is not None and number.startswith("1"):
                number = None
            ext = m["ext"]
    if number is None:
        return None
    return f"{number}转{ext}" if ext else number


def _bare_phone(text: str, area_code: str) -> str | None:
    digits = _PHONE_SEP_RE.sub("", text)
    m = _MOBILE_RE.fullmatch(digits)
    if m:
        return m[1]
    m = _landline_re(area_code).fullmatch(digits)
    if m:
        return f"{area_code}-{m[1]}"
    return None


def _date(raw: object, issue_date: dt.date | None, run_date: dt.date | None) -> _Result:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return _BLANK
    shown = as_typed(raw)
    d = _parse_date(raw)
    if d is None:
        problem = f"“{shown}”无法识别,{_DATE_FORMAT_HINT}"
    elif issue_date is not None and d < issue_date:
        problem = f" {d.isoformat()} 早于发文日期 {issue_date.isoformat()}"
    elif run_date is not None and d > run_date:
        problem = f" {d.isoformat()} 晚于今天({run_date.isoformat()})"
    else:
        return Normalized(d)
    return None, (_Said("required", shown, {"problem": problem}),)


def _parse_date(raw: object) -> dt.date | None:
    if isinstance(raw, dt.datetime):
        return raw.date()
    if isinstance(raw, dt.date):
        return raw
    if isinstance(raw, bool):
        return None
    if isinstance(raw, int | float):
        return _date_from_number(raw)
    if not isinstance(raw, str):
        return None
    s = raw.translate(_FOLD).strip()
    if _DIGITS_DATE_RE.fullmatch(s):  # a serial or 20170120 that went through text
        return _date_from_number(int(s.split(".")[0]))
    m = _DATE_RE.fullmatch(s)
    if m:
        y, mo, d = int(m["y"]), int(m["m1"] or m["m2"]), int(m["d1"] or m["d2"])
        return _valid_date(y, mo, d)
    m = _CN_DATE_RE.fullmatch(s)
    if m:
        y = int("".join(str(_CN_DIGITS[c]) for c in m["y"]))
        cn_month, cn_day = _cn_number(m["m"]), _cn_number(m["d"])
        return _valid_date(y, cn_month, cn_day) if cn_month and cn_day else None
    return None


def _date_from_number(x: float | int) -> dt.date | None:
    if isinstance(x, float):
        if not math.isfinite(x):
            return None
        if not x.is_integer():
            # A serial with a time of day; a fractional 20170120.5 means nothing.
            return (
                _EXCEL_EPOCH + dt.timedelta(days=math.floor(x))
                if _MIN_SERIAL <= x < _MAX_SERIAL + 1
                else None
            )
        x = int(x)
    if 19000101 <= x <= 99991231:  # typed as 20170120
        return _valid_date(x // 10000, x // 100 % 100, x % 100)
    if _MIN_SERIAL <= x <= _MAX_SERIAL:
        return _EXCEL_EPOCH + dt.timedelta(days=x)
    return None


def _valid_date(y: int, m: int, d: int) -> dt.date | None:
    try:
        return dt.date(y, m, d)
    except ValueError:
        return None


def _cn_number(s: str) -> int | None:
    """一 … 三十一, as month and day are written in Chinese numerals."""
    if "十" not in s:
        return _CN_DIGITS[s] if len(s) == 1 else None
    tens, _, ones = s.partition("十")
    if len(tens) > 1 or len(ones) > 1 or "十" in ones:
        return None
    return (_CN_DIGITS[tens] if tens else 1) * 10 + (_CN_DIGITS[ones] if ones else 0)


# --- rendering ---------------------------------------------------------------------------------------


def as_typed(raw: object) -> str:
    """The cell as the person saw it in the spreadsheet."""
    if isinstance(raw, str):
        return raw.strip()
    if isinstance(raw, bool):
        return "TRUE" if raw else "FALSE"
    if isinstance(raw, float):
        if raw.is_integer() and abs(raw) < 1e16:
            return str(int(raw))
        return f"{Decimal(repr(raw)):f}" if math.isfinite(raw) else repr(raw)
    if isinstance(raw, dt.datetime):
        return raw.date().isoformat() if raw.time() == dt.time() else raw.isoformat(sep=" ")
    if isinstance(raw, dt.date | dt.time):
        return raw.isoformat()
    return str(raw)


def _located(
    value: Value, said: tuple[_Said, ...], field: Field, sheet: str, cell: str, row: str, row_label: str
) -> Normalized:
    issues = tuple(Issue(s.kind, field, sheet, cell, row, row_label, s.shown, s.params) for s in said)
    return Normalized(value, issues)


__all__ = ["Issue", "Normalized", "fmt_number", "normalisable", "normalize", "submission"]


# --- a whole submission -----------------------------------------------------------------------------------------


def normalisable(sub: Read, forms: Mapping[str, Form]) -> bool:
    """Whether a read submission's cells can become values: a form of the campaign, its structure found."""
    if not sub.readable or sub.form is None or sub.form not in forms:
        return False
    return not any(f.rule == F_STRUCTURE and f.severity == Severity.ERROR for f in sub.findings)


def submission(
    sub: Read, form: Form, *, issue_date: dt.date, today: dt.date, places: int = 2
) -> tuple[dict[Key, Any], list[Issue]]:
    """A read submission's cells as values, in layout order, and the issues found on the way. Per file and
    pure, so it runs where the file was read (the sandbox's children); see `normalisable` first.

    A blank 合计 (or the template's own SUM) is computed from its rows. A cell with a `type` or `required`
    issue is unusable: a number becomes NaN, left out of every rule that needs it; text keeps what was typed,
    so that it does not count as "not filled" a second time.
    """
    values: dict[Key, Any] = {}
    issues: list[Issue] = []
    for slot in layout.compute(form).slots:
        cell = sub.cells.get(slot.key)
        if cell is None:
            values[slot.key] = None if not slot.field.numeric else math.nan
            continue
        if slot.is_total and (_is_blank(cell.raw) or cell.formula_without_value or _own_sum(cell, sub, slot)):
            # A blank 合计, or the template's own SUM (computed or not): we compute it below. Excel's SUM
            # skips numbers stored as text, so its cached result may be short of the true total.
            values[slot.key] = None
            continue
        result = normalize(
            cell.raw,
            slot.field,
            sheet=cell.sheet,
            cell=cell.address,
            row=slot.key[1],
            row_label=slot.row.label if slot.row else "",
            formula_without_value=cell.formula_without_value,
            issue_date=issue_date,
            run_date=today,
            places=places,
        )
        issues.extend(result.issues)
        value = result.value
        if value is None and result.issues:
            value = math.nan if slot.field.numeric else str(cell.raw)
        values[slot.key] = value
    for section in form.sections:
        total = section.total_row
        if total is None:
            continue
        for f in section.fields:
            key = (section.code, total.code, f.code)
            if values.get(key) is None:
                values[key] = sum(values[(section.code, r.code, f.code)] for r in section.detail_rows)
    return values, issues


def _own_sum(cell: Cell, sub: Read, slot: layout.Slot) -> bool:
    """Whether a 合计 cell still holds the template's formula over the detail cells above it."""
    if not cell.formula:
        return False
    section, _, fld = slot.key
    detail = [sub.cells.get((section, r.code, fld)) for r in slot.section.detail_rows]
    if any(d is None for d in detail):
        return False
    first, last = detail[0].address, detail[-1].address  # type: ignore[union-attr]
    return cell.formula.replace("$", "").replace(" ", "").lstrip("=").upper() == f"SUM({first}:{last})"


def _is_blank(raw: Any) -> bool:
    return raw is None or (isinstance(raw, str) and not raw.strip())
