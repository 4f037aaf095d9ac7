"""What the consolidation shows, as declared in the `consolidation:` section of rules.yaml: the tables of the
consolidated workbook, how each field adds up across units, the figures and sentences of the report and the
summary, the shares, the charts. Parsed by the one loader (config.py calls `parse`), checked against the
forms, every mistake named by its YAML path.

The consolidation and the renderings read these objects and spell no campaign code of their own.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping
from dataclasses import dataclass, field, replace

from pipeline.campaign import review_plan, rulelang, summary_plan

# The loader's own YAML node: this module is the part of the loader that reads one section.
from pipeline.campaign.declared import Field, Form, Section
from pipeline.campaign.node import Node
from pipeline.campaign.summary_plan import Summary, placeholders

Key = tuple[str, str, str]  # (section, row, field), as layout.Slot.key

# One row per unit grouped by kind with subtotals and a total; the rows of one tabular section summed over
# units; unit × the rows of a section for chosen fields; every number of a form per unit that owes it.
TABLE_KINDS = ("by_unit", "by_row", "pivot", "per_unit")
SUM, NOT_SUMMED, RANGE = "sum", "none", "range"
AGGREGATES = (SUM, NOT_SUMMED, RANGE)
# The consolidated workbook's own sheets around the declared tables.
README_SHEET, STATUS_SHEET, PROBLEMS_SHEET, SOURCES_SHEET = "说明", "报送情况", "校验问题", "数据来源"
FIXED_SHEETS = (README_SHEET, STATUS_SHEET, PROBLEMS_SHEET, SOURCES_SHEET)
# What every paragraph may name besides the figures and shares: who the figures are of.
LEVEL_PLACEHOLDERS = ("scope", "where")
# What a paragraph about one form (`form:`) may name besides: how many units owe it, and how many are in.
FORM_PLACEHOLDERS = ("units", "coverage")


@dataclass(frozen=True)
class Column:
    """A value column of a consolidated table and the form slot it sums."""

    name: str  # the DataFrame column
    key: Key  # the slot summed; for a tabular section, its 合计 row (or a detail row in a per_unit table)
    caption: str  # what a person reads: 慰问困难职工(户)
    type: str  # count / money
    section_title: str  # 表一 慰问情况(按行业)
    group: str  # a header spanning neighbouring columns (慰问对象, or a row label), or ""
    label: str  # the header under `group`: the field's caption, or the field label alone within a row group
    aggregate: str = SUM  # how the column adds up across units: sum, none, range


@dataclass(frozen=True)
class Table:
    """One declared table of the consolidated workbook (one sheet)."""

    code: str
    kind: str  # one of TABLE_KINDS
    form: str
    sheet: str
    description: str  # its line under 说明
    section: str = ""  # by_row and pivot: the tabular section
    columns: tuple[Column, ...] = ()  # pivot: one per chosen field, the rows spread across by the table


@dataclass(frozen=True)
class Figure:
    """A consolidated figure the report and the summary quote by name."""

    name: str
    label: str
    form: str
    key: Key
    type: str  # count / money
    unit: str  # the unit of measure a person reads after it (户, 万元)
    aggregate: str  # SUM, or RANGE: how many units have a figure above 0 and the lowest and highest
    card: bool = False  # shown as a card at the top of the HTML report


@dataclass(frozen=True)
class Part:
    key: Key
    label: str  # the row's label for a row of a tabular section, else the field's
    type: str
    unit: str


@dataclass(frozen=True)
class Share:
    """Parts of one form listed in a sentence (中央财政帮扶资金 X 万元(占 Y%)、…), each with its share of
    `whole` when there is one."""

    name: str
    form: str
    parts: tuple[Part, ...]
    whole: Part | None = None


@dataclass(frozen=True)
class Paragraph:
    text: str  # with {placeholders}
    form: str = ""  # printed only at a level where some unit owes this form


@dataclass(frozen=True)
class Chart:
    """A bar chart of the HTML report over a table's unit rows (by_unit) or detail rows (by_row): one bar per
    row, or the parts of a share stacked."""

    title: str
    note: str
    table: str
    bar: str = ""  # the column drawn
    also: str = ""  # a second column quoted after the bar's figure
    stack: str = ""  # a share, its parts stacked


@dataclass(frozen=True)
class ReportTable:
    """The few columns of a by_unit table that the HTML report shows (what fits an A4 page)."""

    table: str
    columns: tuple[tuple[str, str], ...]  # (column name, short header)


@dataclass(frozen=True)
class Plan:
    """The `consolidation:` section as a whole."""

    tables: tuple[Table, ...] = ()
    aggregates: Mapping[tuple[str, str, str], str] = field(default_factory=dict)  # (form, section, field)
    figures: tuple[Figure, ...] = ()
    shares: tuple[Share, ...] = ()
    paragraphs: tuple[Paragraph, ...] = ()
    report_table: ReportTable | None = None
    charts: tuple[Chart, ...] = ()
    summary: Summary = Summary()
    review: review_plan.Review = review_plan.Review()  # last year's workbook, the outliers to verify
    forms: tuple[str, ...] = ()  # the forms consolidated (a table's, a figure's or a share's), in rules order

    def table(self, code: str) -> Table:
        return next(t for t in self.tables if t.code == code)

    def share(self, name: str) -> Share:
        return next(s for s in self.shares if s.name == name)

    def aggregate(self, form: str, section: str, field_code: str) -> str:
        return self.aggregates.get((form, section, field_code), SUM)


# --- columns, worked out from the form -----------------------------------------------------------------------


def numeric_sections(form: Form) -> tuple[Section, ...]:
    return tuple(s for s in form.sections if not s.footer and any(f.numeric for f in s.fields))


def _column(
    section: Section, f: Field, mode: Mapping[Key, str], row: str = "", group: str | None = None
) -> Column:
    """The column of field `f` (at `row` of a tabular section: its 合计 row in a by_unit table)."""
    key = (section.code, row, f.code)
    aggregate = mode.get((section.code, "", f.code), SUM)
    return Column(
        f.code,
        key,
        f.caption,
        f.type,
        section.title,
        f.group if group is None else group,
        f.caption,
        aggregate,
    )


def _unit_columns(form: Form, mode: Mapping[Key, str]) -> list[Column]:
    """A unit's whole form on one line: the 合计 row of a tabular section, every field of a single one."""
    columns = []
    for section in numeric_sections(form):
        if section.tabular and section.total_row is None:
            continue  # a breakdown without a 合计 row has no one-line figure
        row = section.total_row.code if section.total_row is not None else ""
        columns += [_column(section, f, mode, row) for f in section.fields if f.numeric]
    return columns


def _row_columns(section: Section, mode: Mapping[Key, str]) -> list[Column]:
    return [_column(section, f, mode) for f in section.fields if f.numeric]


def _every_column(form: Form, mode: Mapping[Key, str]) -> list[Column]:
    """Every number of the form; a tabular section's rows spread across, each row over its fields."""
    columns = []
    for section in numeric_sections(form):
        fields = [f for f in section.fields if f.numeric]
        if not section.tabular:
            columns += [_column(section, f, mode, group="") for f in fields]
            continue
        for row in section.rows:
            for f in fields:
                c = _column(section, f, mode, row.code, group=row.label)
                columns.append(replace(c, name=f"{row.code}.{f.code}", caption=f"{row.label} {f.caption}"))
    return columns


# --- parsing ---------------------------------------------------------------------------------------------


def parse(node: Node, forms: Mapping[str, Form]) -> Plan:
    """The `consolidation:` section (absent: nothing declared, the workbook has its fixed sheets only)."""
    if node.value is None:
        return Plan()
    node.keys(
        (
            "tables",
            "aggregate",
            "figures",
            "shares",
            "paragraphs",
            "report_table",
            "charts",
            "summary",
            "previous",
            "outliers",
        )
    )
    aggregates = _aggregates(node.get("aggregate", required=False), forms)
    tables = _tables(node.get("tables", required=False), forms, aggregates)
    figures = _figures(node.get("figures", required=False), forms, aggregates)
    shares = _shares(node.get("shares", required=False), forms)
    names = [f.name for f in figures] + [s.name for s in shares]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice is not None:
        raise node.fail(f'figures 与 shares 中的名称 "{twice}" 重复')
    known = {*LEVEL_PLACEHOLDERS, *names, *(f"{f.name}_units" for f in figures if f.aggregate == RANGE)}
    paragraphs = _paragraphs(node.get("paragraphs", required=False), forms, known)
    by_code = {t.code: t for t in tables}
    report_node = node.get("report_table", required=False)
    report_table = _report_table(report_node, by_code) if report_node.value is not None else None
    charts = _charts(node.get("charts", required=False), by_code, {s.name: s for s in shares})
    used = {t.form for t in tables} | {f.form for f in figures} | {s.form for s in shares}
    return Plan(
        tables=tables,
        aggregates=aggregates,
        figures=figures,
        shares=shares,
        paragraphs=paragraphs,
        report_table=report_table,
        charts=charts,
        summary=summary_plan.parse(
            node.get("summary", required=False),
            forms,
            known,
            {f.name for f in figures},
            set(FORM_PLACEHOLDERS),
        ),
        review=review_plan.parse(
            node.get("previous", required=False),
            node.get("outliers", required=False),
            forms,
            {f.name for f in figures},
            _path,
        ),
        forms=tuple(code for code in forms if code in used),
    )


def _path(node: Node, forms: Mapping[str, Form], rows: bool = True) -> tuple[Form, Section, str, str]:
    """A numeric value of a form written `表.节.字段` or `表.节.行.字段` (with `rows`: a tabular section's
    value needs its row; without: a field of any section, all its rows)."""
    text = node.text()
    if rows:
        scope = rulelang.Scope(forms=forms, cross_form=True)
        try:
            expr = rulelang.parse(text, scope)
        except rulelang.ExprError as exc:
            raise node.fail(str(exc)) from None
        if not isinstance(expr.tree, ast.Name | ast.Attribute) or len(expr.refs) != 1:
            raise node.fail(f'"{text}" 应写成 表.节.字段 或 表.节.行.字段')
        ref = expr.refs[0]
        form = forms[ref.form]
        return form, form.section(ref.section), ref.row, ref.field
    parts = text.split(".")
    if len(parts) != 3 or parts[0] not in forms:
        raise node.fail(f'"{text}" 应写成 表.节.字段,表有:{", ".join(forms)}')
    form = forms[parts[0]]
    section = next((s for s in form.sections if s.code == parts[1]), None)
    if section is None:
        raise node.fail(f'报表 {form.code} 中没有 "{parts[1]}" 这一节')
    f = next((f for f in section.fields if f.code == parts[2]), None)
    if f is None or not f.numeric:
        raise node.fail(f'{form.code}.{section.code} 中没有数值字段 "{parts[2]}"')
    return form, section, "", f.code


def _aggregates(node: Node, forms: Mapping[str, Form]) -> dict[tuple[str, str, str], str]:
    if node.value is None:
        return {}
    out = {}
    for text, value in node.items():
        form, section, _, code = _path(Node(text, f"{node.path}.{text}"), forms, rows=False)
        if value.text() not in AGGREGATES:
            raise value.fail(f'未知的汇总方式 "{value.text()}",可选:{", ".join(AGGREGATES)}')
        out[(form.code, section.code, code)] = value.text()
    return out


def _modes(form: Form, aggregates: Mapping[tuple[str, str, str], str]) -> dict[Key, str]:
    return {(s, "", f): mode for (code, s, f), mode in aggregates.items() if code == form.code}


def _tables(
    node: Node, forms: Mapping[str, Form], aggregates: Mapping[tuple[str, str, str], str]
) -> tuple[Table, ...]:
    if node.value is None:
        return ()
    tables: list[Table] = []
    for n in node.seq():
        n.keys(("code", "kind", "form", "sheet", "description", "section", "fields"))
        code, kind = n.get("code").code(), n.get("kind").text()
        if kind not in TABLE_KINDS:
            raise n.get("kind").fail(f'未知的汇总表类型 "{kind}",可选:{", ".join(TABLE_KINDS)}')
        form_node = n.get("form")
        if form_node.text() not in forms:
            raise form_node.fail(f'不存在的报表 "{form_node.text()}",已有:{", ".join(forms)}')
        form = forms[form_node.text()]
        mode = _modes(form, aggregates)
        section_code = ""
        if kind in ("by_row", "pivot"):
            section_node = n.get("section")
            section_code = section_node.text()
            section = next((s for s in form.sections if s.code == section_code), None)
            if section is None or not section.tabular:
                raise section_node.fail(f'报表 {form.code} 中没有分行的节 "{section_code}"')
        columns = _columns_of(n, kind, form, section_code, mode)
        names = [c.name for c in columns]
        twice = sorted({name for name in names if names.count(name) > 1})
        if twice:
            raise n.get("kind").fail(
                f"报表 {form.code} 的不同节中有同名字段 {', '.join(twice)},无法逐单位汇总成一行"
            )
        tables.append(
            Table(
                code,
                kind,
                form.code,
                _sheet(n.get("sheet"), tables),
                n.get("description").text(),
                section_code,
                tuple(columns),
            )
        )
    codes = [t.code for t in tables]
    for n, t in zip(node.seq(), tables, strict=True):
        if codes.count(t.code) > 1:
            raise n.get("code").fail(f'汇总表代码 "{t.code}" 重复')
    return tuple(tables)


def _columns_of(
    node: Node, kind: str, form: Form, section_code: str, mode: Mapping[Key, str]
) -> list[Column]:
    """The value columns of a table of `kind`; a pivot's are the fields its `fields` choose."""
    if kind == "by_unit":
        return _unit_columns(form, mode)
    if kind == "per_unit":
        return _every_column(form, mode)
    section = form.section(section_code)
    if kind == "by_row":
        return _row_columns(section, mode)
    fields_node = node.get("fields")
    numeric = {f.code: f for f in section.fields if f.numeric}
    for fn in fields_node.seq():
        if fn.text() not in numeric:
            raise fn.fail(
                f'{form.code}.{section_code} 中没有数值字段 "{fn.text()}",可用:{", ".join(numeric)}'
            )
    chosen = set(fields_node.strings())
    return [c for c in _row_columns(section, mode) if c.name in chosen]


def _sheet(node: Node, earlier: list[Table]) -> str:
    name = node.text()
    if len(name) > 31 or any(ch in name for ch in "[]:*?/\\") or name == "_meta":
        raise node.fail(f'工作表名 "{name}" 不可用:最长 31 个字符,不能含 []:*?/\\')
    if name in FIXED_SHEETS or name in {t.sheet for t in earlier}:
        raise node.fail(f'工作表名 "{name}" 已被占用(汇总表固定有:{"、".join(FIXED_SHEETS)})')
    return name


def _figures(
    node: Node, forms: Mapping[str, Form], aggregates: Mapping[tuple[str, str, str], str]
) -> tuple[Figure, ...]:
    if node.value is None:
        return ()
    figures = []
    for n in node.seq():
        n.keys(("name", "label", "at", "unit", "card"))
        form, section, row, code = _path(n.get("at"), forms)
        f = section.field(code)
        mode = aggregates.get((form.code, section.code, code), SUM)
        if mode == NOT_SUMMED:
            raise n.get("at").fail(f"{f.label} 不汇总(aggregate: none),不能作为合计数引用")
        unit, card = n.get("unit", required=False), n.get("card", required=False)
        figures.append(
            Figure(
                name=n.get("name").code(),
                label=n.get("label").text(),
                form=form.code,
                key=(section.code, row, code),
                type=f.type,
                unit=unit.text() if unit.value is not None else f.unit,
                aggregate=mode,
                card=card.boolean() if card.value is not None else False,
            )
        )
    return tuple(figures)


def _part(node: Node, forms: Mapping[str, Form]) -> tuple[str, Part]:
    form, section, row, code = _path(node, forms)
    f = section.field(code)
    row_of = next((r for r in section.rows if r.code == row), None)
    label = row_of.label if row_of is not None and not row_of.total else f.label
    return form.code, Part((section.code, row, code), label, f.type, f.unit)


def _shares(node: Node, forms: Mapping[str, Form]) -> tuple[Share, ...]:
    if node.value is None:
        return ()
    shares = []
    for n in node.seq():
        n.keys(("name", "parts", "whole"))
        parts = [_part(p, forms) for p in n.get("parts").seq()]
        if not parts:
            raise n.get("parts").fail("至少要有一项")
        whole_node = n.get("whole", required=False)
        whole = _part(whole_node, forms) if whole_node.value is not None else None
        owners = {form for form, _ in parts} | ({whole[0]} if whole else set())
        if len(owners) > 1:
            raise n.fail(f"各项应属于同一张报表,实际涉及:{', '.join(sorted(owners))}")
        shares.append(
            Share(n.get("name").code(), parts[0][0], tuple(p for _, p in parts), whole[1] if whole else None)
        )
    return tuple(shares)


def _paragraphs(node: Node, forms: Mapping[str, Form], known: set[str]) -> tuple[Paragraph, ...]:
    if node.value is None:
        return ()
    out = []
    for n in node.seq():
        if isinstance(n.value, dict):
            n.keys(("text", "form"))
            form = n.get("form").text()
            if form not in forms:
                raise n.get("form").fail(f'不存在的报表 "{form}",已有:{", ".join(forms)}')
            out.append(Paragraph(placeholders(n.get("text"), known | set(FORM_PLACEHOLDERS)), form))
        else:
            out.append(Paragraph(placeholders(n, known)))
    return tuple(out)


def _report_table(node: Node, tables: Mapping[str, Table]) -> ReportTable:
    node.keys(("table", "columns"))
    table = _table_of(node.get("table"), tables, ("by_unit",))
    names = {c.name for c in table.columns}
    columns = []
    for name, header in node.get("columns").items():
        if name not in names:
            raise header.fail(f'汇总表 {table.code} 中没有 "{name}" 这一栏,可用:{", ".join(sorted(names))}')
        columns.append((name, header.text()))
    return ReportTable(table.code, tuple(columns))


def _table_of(node: Node, tables: Mapping[str, Table], kinds: tuple[str, ...]) -> Table:
    code = node.text()
    if code not in tables or tables[code].kind not in kinds:
        fit = [t.code for t in tables.values() if t.kind in kinds]
        raise node.fail(f"应为 {'/'.join(kinds)} 类型的汇总表,可用:{', '.join(fit) or '无'}")
    return tables[code]


def _charts(node: Node, tables: Mapping[str, Table], shares: Mapping[str, Share]) -> tuple[Chart, ...]:
    if node.value is None:
        return ()
    charts = []
    for n in node.seq():
        n.keys(("title", "note", "table", "bar", "also", "stack"))
        has = {key: n.get(key, required=False).value is not None for key in ("bar", "also", "stack")}
        table = _table_of(n.get("table"), tables, ("by_unit",) if has["stack"] else ("by_unit", "by_row"))
        names = {c.name for c in table.columns}
        for key in ("bar", "also"):
            if has[key] and n.get(key).text() not in names:
                raise n.get(key).fail(f'汇总表 {table.code} 中没有 "{n.get(key).text()}" 这一栏')
        if has["stack"] == has["bar"]:
            raise n.fail("bar(一栏画成条形)与 stack(一组占比堆叠)应写且只写一个")
        stack = ""
        if has["stack"]:
            stack = n.get("stack").text()
            share = shares.get(stack)
            keys = {c.key for c in table.columns}
            if (
                share is None
                or share.form != table.form
                or share.whole is None
                or not all(p.key in keys for p in (*share.parts, share.whole))
            ):
                raise n.get("stack").fail(f'"{stack}" 应为 shares 中属于汇总表 {table.code}、有 whole 的一组')
        note = n.get("note", required=False)
        charts.append(
            Chart(
                title=n.get("title").text(),
                note=note.text() if note.value is not None else "",
                table=table.code,
                bar=n.get("bar").text() if has["bar"] else "",
                also=n.get("also").text() if has["also"] else "",
                stack=stack,
            )
        )
    return tuple(charts)
