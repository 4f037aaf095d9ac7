"""A demo inbox: the project's own templates filled the way units fill them, mistakes included.

What the figures are and which mistakes are planted is rules.yaml's (`demo:`, read by campaign/demo_plan.py);
here they are drawn and written as files. The same seed gives the same files, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import os
import random
import zipfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.campaign import demo_plan, layout, rulelang
from pipeline.campaign.config import PROVINCE, Form, Rules, Unit
from pipeline.io import atomic
from pipeline.render import template, xlsxpatch

Values = dict[tuple[str, str, str], Any]  # (section, row, field) -> what the person typed

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗符云邢"
GIVEN = ["海涛", "建华", "秀英", "志强", "丽娟", "文斌", "春梅", "国庆", "小燕", "德明", "美玲", "少华"]
FULL_WIDTH = str.maketrans("0123456789.,", "０１２３４５６７８９．，")
CORRECT, REPORT, CORRECTED = "填写正确", "书面报告", "第2版:已更正"


@dataclass(frozen=True)
class DemoFile:
    path: Path
    unit: str
    item: str
    note: str  # what this file shows, in Chinese, for the demo summary


@dataclass
class DemoInbox:
    files: list[DemoFile] = field(default_factory=list)
    missing: list[tuple[str, str]] = field(default_factory=list)  # (unit code, item)
    previous: Path | None = None  # last year's consolidated workbook, when the demo wrote one
    # each unit's correct figures of each form, before any mistake is planted: last year's are made from them
    values: dict[tuple[str, str], Values] = field(default_factory=dict)


Compiled = Callable[[Callable[[rulelang.Ref], Any], Mapping[str, Any]], Any]


class _Filler:
    """The declared steps of every form (`demo:` in rules.yaml) compiled once, drawing from the random
    generator it is handed for each form."""

    def __init__(self, rules: Rules):
        self.rules = rules
        self.rng = random.Random(0)
        functions: dict[str, Callable[..., Any]] = {
            "rand": lambda a, b: self.rng.uniform(a, b),
            "randint": lambda a, b: self.rng.randint(int(a), int(b)),
            "min": min,
            "max": max,
            "round": round,
            "person": self.person,
            "phone": self.phone,
            "typed_date": self.typed_date,
        }
        self.functions = functions
        plan = rules.demo
        self.size_of: Compiled | None = (
            rulelang.compiled(plan.size, rulelang.Scope(forms={}, functions=demo_plan.FUNCTIONS), functions)
            if plan.size is not None
            else None
        )
        self.steps = {
            form: [
                (
                    step,
                    rulelang.compiled(step.expr, step.scope, functions) if step.expr and step.scope else None,
                )
                for step in steps
            ]
            for form, steps in plan.forms.items()
        }

    def person(self) -> str:
        return self.rng.choice(SURNAMES) + self.rng.choice(GIVEN)

    def phone(self, area: str) -> str:
        rng = self.rng
        return rng.choice(
            [
                f"{area}-{rng.randint(62000000, 68999999)}",
                f"1{rng.choice('3589')}{rng.randint(100000000, 999999999)}",
            ]
        )

    def typed_date(self, first: int, last: int) -> Any:
        """A day `first` to `last` days after the issue date, typed every which way people type dates (the
        reader accepts all of these)."""
        day = self.rules.campaign.issue_date + dt.timedelta(days=self.rng.randint(int(first), int(last)))
        return self.rng.choice(
            [
                dt.datetime.combine(day, dt.time()),
                f"{day.year}年{day.month}月{day.day}日",
                f"{day.year}.{day.month}.{day.day}",
                f"{day.year}-{day.month}-{day.day}",
                f"{day.year}/{day.month:02d}/{day.day:02d}",
            ]
        )

    def size(self, unit: Unit, rng: random.Random) -> float:
        sizes = self.rules.demo.sizes
        if unit.code in sizes:
            return sizes[unit.code]
        self.rng = rng
        return float(self.size_of(_nothing, {})) if self.size_of else 1.0

    def values(self, form: str, rng: random.Random, size: float) -> Values:
        """A correct form: every value by its step, each 合计 the sum of its rows."""
        self.rng = rng
        v: Values = {}
        names = {demo_plan.SIZE: size}
        for step, compiled in self.steps.get(form, ()):
            if compiled is None:
                value: Any = sum(v[k] for k in step.detail)
            else:
                row = step.key[1]

                def lookup(ref: rulelang.Ref, row: str = row) -> Any:
                    return v[(ref.section, row if ref.row == rulelang.CURRENT_ROW else ref.row, ref.field)]

                value = compiled(lookup, {**names, **step.names} if step.names else names)
            v[step.key] = _typed(value, step.type)
        return v

    def plant(self, v: Values, mistake: demo_plan.Mistake, rng: random.Random) -> None:
        """`mistake` made in the correct form `v`."""
        self.rng = rng
        form = self.rules.forms[mistake.form]
        if mistake.kind == "total_typed_over":  # the sheet unprotected and a 合计 typed over the formula
            (change,) = mistake.changes
            v[change.key] = v[change.key] + rng.randint(3, 30)
        elif mistake.kind == "money_in_yuan":
            for key in [k for k in v if k[0] == mistake.section]:
                if form.section(key[0]).field(key[2]).type == "money":
                    v[key] = round(v[key] * 10000)
        elif mistake.kind == "left_blank":
            for change in mistake.changes:
                v[change.key] = None
        elif mistake.kind in ("text_in_number", "messy_but_fine"):
            for change in mistake.changes:
                v[change.key] = _spelled(v.get(change.key), change.spelling)
        elif mistake.kind in ("breaks_rule", "resubmission"):
            for change in mistake.changes:
                assert change.expr is not None and change.scope is not None
                row = change.key[1]

                def lookup(ref: rulelang.Ref, row: str = row) -> Any:
                    return v[(ref.section, row if ref.row == rulelang.CURRENT_ROW else ref.row, ref.field)]

                compiled = rulelang.compiled(change.expr, change.scope, self.functions)
                v[change.key] = _typed(compiled(lookup, {demo_plan.SIZE: 1.0}), change.type)
            _retotal(form, v, {(c.key[0], c.key[2]) for c in mistake.changes})


def _nothing(ref: rulelang.Ref) -> Any:
    raise KeyError(ref)


def _typed(value: Any, ftype: str) -> Any:
    """A drawn number as a person types it: whole for a count, to the cent for money."""
    if ftype == "count":
        return int(round(value))
    if ftype == "money":
        return round(float(value), 2)
    return value


def _spelled(value: Any, spelling: str) -> str:
    if spelling == demo_plan.FULLWIDTH:
        return str(value).translate(FULL_WIDTH)
    return spelling.format(value=value)


def _retotal(form: Form, v: Values, columns: set[tuple[str, str]]) -> None:
    """The 合计 of each changed column summed again, as the sheet's formula would."""
    for section_code, code in columns:
        section = form.section(section_code)
        if section.total_row is None:
            continue
        detail = [v.get((section_code, r.code, code)) or 0 for r in section.detail_rows]
        f = section.field(code)
        v[(section_code, section.total_row.code, code)] = _typed(sum(detail), f.type)


@functools.lru_cache(maxsize=4)
def _filler(rules: Rules) -> _Filler:
    return _Filler(rules)


def form_values(rules: Rules, form: str, rng: random.Random, size: float = 1.0) -> Values:
    """A correct filled form `form`, drawn from `rng` as rules.yaml's `demo:` section declares: every rule
    holds (the demo's and the tests' correct forms)."""
    return _filler(rules).values(form, rng, size)


# --- writing files ------------------------------------------------------------------------------------------


def as_xls(rules: Rules, form: Form, unit: Unit, values: Values) -> bytes:
    """The same filled form as a county's "另存为 Excel 97-2003" would give: values, sheets, _meta hidden."""
    import xlwt
    from openpyxl import load_workbook

    wb = load_workbook(io.BytesIO(template.fill(rules, form, unit, values)), data_only=False)
    lay = layout.compute(form)
    results = {s.cell: values.get(s.key) for s in lay.slots if s.is_total}
    book = xlwt.Workbook(encoding="utf-8")
    for ws in wb.worksheets:
        sheet = book.add_sheet(ws.title)
        for row in ws.iter_rows():
            for cell in row:
                value = cell.value
                if value is None:
                    continue
                if isinstance(value, str) and value.startswith("="):
                    value = results.get(cell.coordinate)
                    if value is None:
                        continue
                if isinstance(value, dt.datetime):
                    sheet.write(
                        cell.row - 1, cell.column - 1, value, xlwt.easyxf(num_format_str="yyyy-mm-dd")
                    )
                else:
                    sheet.write(cell.row - 1, cell.column - 1, value)
        if ws.sheet_state == "hidden":
            sheet.visibility = 1
    buffer = io.BytesIO()
    book.save(buffer)
    return buffer.getvalue()


def report_docx(unit: Unit, rules: Rules) -> bytes:
    """A minimal Word document standing in for the unit's written 送温暖报告."""
    title = f"{unit.name}关于{rules.campaign.title}的报告"
    body = (
        f"{rules.campaign.issuer}:根据{rules.campaign.document_number}通知要求,我会认真开展{rules.campaign.title},"
        "现将有关情况报告如下。"
    )
    paragraphs = "".join(f"<w:p><w:r><w:t>{t}</w:t></w:r></w:p>" for t in (title, body))
    parts = {
        "[Content_Types].xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
            '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
            '<Default Extension="xml" ContentType="application/xml"/>'
            '<Override PartName="/word/document.xml" '
            'ContentType="application/vnd.openxmlformats-officedocument.wordprocessingml.document.main+xml"/></Types>'
        ),
        "_rels/.rels": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
            '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/'
            'officeDocument" Target="word/document.xml"/></Relationships>'
        ),
        "word/document.xml": (
            '<?xml version="1.0" encoding="UTF-8" standalone="yes"?>'
            '<w:document xmlns:w="http://schemas.openxmlformats.org/wordprocessingml/2006/main">'
            f"<w:body>{paragraphs}</w:body></w:document>"
        ),
    }
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as z:
        for name, text in parts.items():
            z.writestr(zipfile.ZipInfo(name, xlsxpatch.ZIP_TIME), text.encode("utf-8"))
    return out.getvalue()


def make(rules: Rules, inbox: Path, seed: int = 2017) -> DemoInbox:
    """Fill the demo inbox: most units correct, the mistakes of rules.yaml's `demo:` section each made by one
    unit reporting to the top level (drawn from the seed), a unit below sending to the wrong level."""
    rng = random.Random(seed)
    filler = _filler(rules)
    direct = [u for u in rules.units if u.reports_to == PROVINCE]
    # Who errs how: drawn once from the seed, one unit for each mistake, as far as the units go.
    order = list(direct)
    rng.shuffle(order)
    per_unit = [m for m in rules.demo.mistakes if m.per_unit]
    mistake_of = {unit.code: m for unit, m in zip(order, per_unit, strict=False)}
    demo = DemoInbox()
    first_day = rules.campaign.issue_date + dt.timedelta(days=28)

    def put(day: dt.date, name: str, data: bytes, unit: Unit, item: str, note: str) -> None:
        path = inbox / day.isoformat() / name
        atomic.write_bytes(path, data)
        stamp = dt.datetime.combine(day, dt.time(10, 0), tzinfo=rules.campaign.tz).timestamp()
        os.utime(path, (stamp, stamp))
        demo.files.append(DemoFile(path, unit.code, item, note))

    def send(
        day: dt.date,
        unit: Unit,
        item: str,
        size: float,
        mistake: demo_plan.Mistake | None,
        note: str = CORRECT,
    ) -> None:
        form = rules.forms[rules.items[item].form or ""]
        values = filler.values(form.code, rng, size)
        demo.values[(unit.code, form.code)] = dict(values)
        name = template.file_name(unit, form)
        if mistake is None or mistake.form != form.code:
            put(day, name, template.fill(rules, form, unit, values), unit, item, note)
        elif mistake.kind == "xls_copy":
            put(
                day,
                name.removesuffix(".xlsx") + ".xls",
                as_xls(rules, form, unit, values),
                unit,
                item,
                mistake.note,
            )
        elif mistake.kind == "resubmission":
            wrong = dict(values)
            filler.plant(wrong, mistake, rng)
            put(day, name, template.fill(rules, form, unit, wrong), unit, item, f"第1版:{mistake.note}")
            again = f"{unit.aliases[0] if unit.aliases else unit.name}{form.attachment}(修改后).xlsx"
            put(
                day + dt.timedelta(days=mistake.days_later),
                again,
                template.fill(rules, form, unit, values),
                unit,
                item,
                CORRECTED,
            )
        else:
            filler.plant(values, mistake, rng)
            put(day, name, template.fill(rules, form, unit, values), unit, item, mistake.note)

    for index, unit in enumerate(direct):
        day = first_day + dt.timedelta(days=index % 10)
        size = filler.size(unit, rng)
        mistake = mistake_of.get(unit.code)
        for item in unit.items:
            if mistake is not None and (mistake.kind == "sends_nothing" or mistake.item == item):
                demo.missing.append((unit.code, item))
            elif rules.items[item].form is None:
                put(
                    day,
                    f"{unit.name}{rules.items[item].label}.docx",
                    report_docx(unit, rules),
                    unit,
                    item,
                    REPORT,
                )
            else:
                send(day, unit, item, size, mistake)

    # A unit that reports to another (an industry union to the 帮扶中心) e-mails the top level by mistake.
    below = [u for u in rules.units if u.reports_to != PROVINCE][:1]
    for unit, note in ((u, m.note) for u in below for m in rules.demo.mistakes if not m.per_unit):
        size = filler.size(unit, rng)
        for item in (i for i in unit.items if rules.items[i].form is not None):
            send(first_day + dt.timedelta(days=3), unit, item, size, None, note)
    return demo


# --- last year ------------------------------------------------------------------------------------------------


def previous_year(rules: Rules, made: DemoInbox | None = None, seed: int = 2016) -> bytes | None:
    """Last year's final consolidated workbook as the demo imagines it (rules.yaml's `demo.previous`): each
    unit's correct figures in `made` (drawn afresh for a unit that sent none) with every number scaled by a
    factor of its own, written by the project's own workbook writer as last year's final edition. None when
    rules.yaml declares no previous year."""
    from pipeline.consolidation import consolidate, status
    from pipeline.model import Submission, Verdict
    from pipeline.render.workbook import consolidated_workbook

    plan = rules.demo.previous
    if plan is None or not rules.consolidation.review.previous:
        return None
    rng = random.Random(seed)
    filler = _filler(rules)
    deadline = rules.campaign.deadline
    as_of = deadline.replace(year=deadline.year - 1)
    versions = []
    for unit in rules.units:
        size = filler.size(unit, rng)
        factor = plan.far.get(unit.code, rng.uniform(plan.low, plan.high))
        for item in unit.items:
            form = rules.forms.get(rules.items[item].form or "")
            if form is None or unit.code in plan.absent:
                continue
            drawn = made.values.get((unit.code, form.code)) if made is not None else None
            values = _scaled(form, drawn or filler.values(form.code, rng, size), factor)
            versions.append(
                Submission(
                    sha256=f"{unit.code}-{item}-previous",
                    unit=unit.code,
                    item=item,
                    form=form.code,
                    file=template.file_name(unit, form),
                    received=as_of,
                    version=1,
                    verdict=Verdict.ACCEPTED,
                    values=values,
                )
            )
    c = consolidate.consolidate(rules, versions, status.expected_units(rules))
    now = status.compute(rules, versions, as_of)
    return consolidated_workbook(rules, c, now, {}, versions, as_of=as_of, final=True, edition=1)


def _scaled(form: Form, values: Values, factor: float) -> Values:
    """Every number of a filled form times `factor`: whole for a count, to the cent for money."""
    out = dict(values)
    for section in form.sections:
        for f in section.fields:
            if not f.numeric:
                continue
            for row in section.rows or (None,):
                key = (section.code, row.code if row else "", f.code)
                value = values.get(key)
                if isinstance(value, int | float) and not isinstance(value, bool):
                    out[key] = round(value * factor, 2) if f.type == "money" else round(value * factor)
    return out
