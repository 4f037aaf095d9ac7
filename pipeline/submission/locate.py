"""Where each value of a recognised form is on its sheet: where the template put it (by the `_meta` map or
the layout), checked against the labels beside it; when a person has inserted rows, deleted columns or
renamed the sheet, found again by those labels, with a warning that says what moved or an error that
says what cannot be found.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from pipeline.campaign import layout
from pipeline.campaign.config import Field, Form, Row, Section
from pipeline.model import F_STRUCTURE, Finding, Key, Severity, cell_name, cell_position
from pipeline.submission.text import label
from pipeline.submission.workbook import Book, Grid, Pos, at

# --- what a form looks like, prepared once per campaign ------------------------------------------------------


@dataclass(frozen=True)
class Anchor:
    offset: Pos  # from the value cell to the label cell
    texts: frozenset[str]  # accepted label texts, normalised


@dataclass(frozen=True)
class SlotPlan:
    key: Key
    section: Section
    row: Row | None
    field: Field
    cell: Pos  # the value cell in a fresh template
    anchors: tuple[Anchor, ...]


@dataclass(frozen=True)
class FormPlan:
    """A form's values and the labels that vouch for them, where a fresh template has them."""

    form: Form
    slots: tuple[SlotPlan, ...]
    titles: dict[str, str]  # section code -> normalised section title
    labels: frozenset[str]  # every normalised label of the form, to recognise its sheet by content
    title: str  # normalised form title
    keys: frozenset[Key]

    @classmethod
    def of(cls, form: Form) -> FormPlan:
        slots = tuple(_slot_plan(slot) for slot in layout.compute(form).slots)
        labels = {t for p in slots for a in p.anchors for t in a.texts}
        titles = {s.code: label(s.title) for s in form.sections if not s.footer and s.title}
        labels.update(titles.values())
        return cls(form, slots, titles, frozenset(labels), label(form.title), frozenset(p.key for p in slots))


def _slot_plan(slot: layout.Slot) -> SlotPlan:
    cell = cell_position(slot.cell)
    captions = frozenset({label(slot.field.caption), label(slot.field.label)})
    anchors: tuple[Anchor, ...]
    if slot.section.footer:
        anchors = (
            Anchor(_minus(cell_position(slot.row_label_cell), cell), frozenset({label(slot.field.label)})),
        )
    elif slot.row is not None:
        anchors = (
            Anchor(_minus(cell_position(slot.row_label_cell), cell), frozenset({label(slot.row.label)})),
            Anchor(_minus(cell_position(slot.field_label_cell), cell), captions),
        )
    else:
        anchors = (Anchor(_minus(cell_position(slot.field_label_cell), cell), captions),)
    return SlotPlan(slot.key, slot.section, slot.row, slot.field, cell, anchors)


@dataclass(frozen=True)
class Placement:
    """Where a form's cells and their labels should be, by the `_meta` map or else the rules' layout."""

    sheet: str
    expected: dict[Key, Pos]
    # Per section, each label cell with the texts it may hold: slots of a row or a column share their labels,
    # so each is looked at once per section.
    labels: dict[str, tuple[tuple[Pos, frozenset[str]], ...]]

    @classmethod
    def of(cls, plan: FormPlan, cells: Mapping[Key, tuple[str, str]] | None) -> Placement:
        """The placement of `plan` by a `_meta` map (None: the layout's)."""
        mapped = {k: v for k, v in cells.items() if k in plan.keys} if cells else {}
        sheet = Counter(s for s, _ in mapped.values()).most_common(1)[0][0] if mapped else plan.form.sheet
        expected = {p.key: cell_position(mapped[p.key][1]) if p.key in mapped else p.cell for p in plan.slots}
        labels: dict[str, dict[tuple[Pos, frozenset[str]], None]] = {}
        for p in plan.slots:
            pos = expected[p.key]
            wanted = labels.setdefault(p.section.code, {})
            for a in p.anchors:
                wanted[(pos[0] + a.offset[0], pos[1] + a.offset[1]), a.texts] = None
        return cls(sheet, expected, {code: tuple(wanted) for code, wanted in labels.items()})


# --- which sheet -------------------------------------------------------------------------------------------


def find_sheet(
    book: Book, plan: FormPlan, wanted: str, titled: list[tuple[str, str]]
) -> tuple[str | None, list[Finding]]:
    """The sheet the form is on: `wanted`, or the one visible sheet that carries its title or most of its labels."""
    if wanted in book.names:
        return wanted, []
    candidates = [
        name
        for name in book.visible
        if (name, plan.form.code) in titled or _looks_like(plan, book.grid(name))
    ]
    if len(candidates) == 1:
        return candidates[0], [
            Finding(
                F_STRUCTURE,
                Severity.WARNING,
                f'工作表名称已由"{wanted}"改为"{candidates[0]}",已按内容识别',
                sheet=candidates[0],
            )
        ]
    if not candidates:
        message = f'找不到工作表"{wanted}",其他工作表中也没有这张表的内容;请使用原模板填报'
    else:
        listed = "、".join(f'"{c}"' for c in candidates)
        message = (
            f'找不到工作表"{wanted}",而 {listed} {len(candidates)} 个工作表都像是这张表,无法确定使用哪一个;'
            "请只保留一个"
        )
    return None, [Finding(F_STRUCTURE, Severity.ERROR, message)]


def _looks_like(plan: FormPlan, grid: Grid) -> bool:
    texts = {label(v) for row in grid for v in row if isinstance(v, str)}
    return len(plan.labels & texts) * 2 >= len(plan.labels)


# --- where each value is ---------------------------------------------------------------------------------


def locate(plan: FormPlan, grid: Grid, sheet: str, place: Placement) -> tuple[dict[Key, Pos], list[Finding]]:
    """Each value's position: the expected one for the sections whose labels are all in place, searched by
    labels for the others."""
    seen: dict[Pos, str] = {}

    def text_at(pos: Pos) -> str:
        if pos not in seen:
            seen[pos] = label(at(grid, pos))
        return seen[pos]

    expected, labels = place.expected, place.labels
    settled = {code for code, wanted in labels.items() if all(text_at(pos) in texts for pos, texts in wanted)}
    if len(settled) == len(labels):
        return expected, []  # shared by the copies of a template: not to be changed

    searched, problems = _Search(plan, grid).sections(
        [s for s in plan.form.sections if s.code not in settled]
    )
    found = {k: v for k, v in expected.items() if k[0] in settled}
    found.update(searched)
    findings = [
        Finding(
            F_STRUCTURE, Severity.ERROR, f'工作表"{sheet}"{p.message}', sheet=sheet, row=p.row, field=p.field
        )
        for p in problems
    ]
    moved = describe_moves(plan, found, expected)
    if moved:
        findings.append(
            Finding(F_STRUCTURE, Severity.WARNING, f"表格位置与模板不同({moved}),已按标签识别", sheet=sheet)
        )
    return found, findings


@dataclass(frozen=True)
class _Problem:
    message: str
    row: str = ""
    field: str = ""


class _Search:
    """Finding each value of some sections by its labels: a row label and a column caption, a caption, or a
    footer label. Each section is looked for below its own title and above the next one, so that a label
    two sections share (合计) is not taken from the wrong table."""

    def __init__(self, plan: FormPlan, grid: Grid):
        self.plan = plan
        self.rows = len(grid)
        self.where: dict[str, list[Pos]] = {}
        for r, line in enumerate(grid):
            for c, value in enumerate(line):
                text = label(value)
                if text:
                    self.where.setdefault(text, []).append((r, c))
        self.regions = self._regions()
        self.slots = {p.key: p for p in plan.slots}
        self.found: dict[Key, Pos] = {}
        self.problems: list[_Problem] = []

    def _regions(self) -> dict[str, tuple[int, int]]:
        title_rows = []
        for code, title in self.plan.titles.items():
            places = self.where.get(title, [])
            if len(places) == 1:
                title_rows.append((places[0][0], code))
        title_rows.sort()
        regions: dict[str, tuple[int, int]] = {}
        for i, (r, code) in enumerate(title_rows):
            end = title_rows[i + 1][0] - 1 if i + 1 < len(title_rows) else self.rows
            regions[code] = (r + 1, end)
        return regions

    def sections(self, sections: list[Section]) -> tuple[dict[Key, Pos], list[_Problem]]:
        for section in sections:
            lo, hi = self.regions.get(section.code, (0, self.rows))
            name = section.title or "填报信息"
            before = len(self.problems)
            if section.tabular:
                self._table(section, lo, hi, name)
            else:
                self._single(section, lo, hi, name)
            if len(self.problems) - before == len(section.fields) + len(section.rows):
                # Nothing of it is there: one message, not one per label.
                del self.problems[before:]
                self.problems.append(
                    _Problem(f"中找不到{name}(标题、栏目都不在),无法读取这一部分;请使用原模板填报")
                )
        return self.found, self.problems

    def _table(self, section: Section, lo: int, hi: int, name: str) -> None:
        rows: dict[str, Pos | None] = {
            row.code: self._one({label(row.label)}, lo, hi, name, row.label, "这一行数据", row=row.code)
            for row in section.rows
        }
        top = min((p[0] for p in rows.values() if p is not None), default=hi + 1)
        for f in section.fields:
            texts = self.slots[(section.code, section.rows[0].code, f.code)].anchors[1].texts
            cap = self._one(texts, lo, top - 1, name, f.caption, "这一栏数据", field=f.code)
            if cap is None:
                continue
            for row in section.rows:
                pos = rows[row.code]
                if pos is not None:
                    self.found[(section.code, row.code, f.code)] = (pos[0], cap[1])

    def _single(self, section: Section, lo: int, hi: int, name: str) -> None:
        for f in section.fields:
            p = self.slots[(section.code, "", f.code)]
            shown = f"{f.label}:" if section.footer else f.caption
            found = self._one(p.anchors[0].texts, lo, hi, name, shown, "这一项", field=f.code)
            if found is not None:
                self.found[p.key] = _minus(found, p.anchors[0].offset)

    def _one(
        self, texts: Iterable[str], lo: int, hi: int, name: str, shown: str, what: str, **who: str
    ) -> Pos | None:
        """The one cell between rows `lo` and `hi` that holds one of `texts`; else a problem, and None."""
        got = sorted({p for t in texts for p in self.where.get(t, []) if lo <= p[0] <= hi})
        if len(got) == 1:
            return got[0]
        if got:
            cells = "、".join(cell_name(*p) for p in got)
            self.problems.append(
                _Problem(f'中{name}的"{shown}"出现了 {len(got)} 次({cells}),无法确定{what}的位置', **who)
            )
        else:
            self.problems.append(
                _Problem(f'中找不到{name}的"{shown}",无法确定{what}的位置;请按原模板填报,不要增删行列', **who)
            )
        return None


def describe_moves(plan: FormPlan, found: dict[Key, Pos], expected: dict[Key, Pos]) -> str:
    """What moved, in words: one shift for the whole sheet, else each section that moved."""
    deltas = {k: _minus(found[k], expected[k]) for k in found}
    if not any(deltas.values()):
        return ""
    if len(set(deltas.values())) == 1:
        dr, dc = next(iter(deltas.values()))
        parts = []
        if dr:
            parts.append(f"在上方插入了 {dr} 行" if dr > 0 else f"在上方删除了 {-dr} 行")
        if dc:
            parts.append(f"在左侧插入了 {dc} 列" if dc > 0 else f"在左侧删除了 {-dc} 列")
        return "、".join(parts)
    parts = []
    for section in plan.form.sections:
        moves = {d for k, d in deltas.items() if k[0] == section.code}
        if not moves or moves == {(0, 0)}:
            continue
        name = section.title or "填报信息"
        if len(moves) == 1:
            parts.append(name + _shift_words(next(iter(moves))))
        else:
            what = (
                "列"
                if all(dr == 0 for dr, _ in moves)
                else "行"
                if all(dc == 0 for _, dc in moves)
                else "行和列"
            )
            parts.append(f"{name}中有{what}被插入或删除")
    return ";".join(parts)


def _shift_words(delta: Pos) -> str:
    dr, dc = delta
    words = []
    if dr:
        words.append(f"下移 {dr} 行" if dr > 0 else f"上移 {-dr} 行")
    if dc:
        words.append(f"右移 {dc} 列" if dc > 0 else f"左移 {-dc} 列")
    return "、".join(words)


def _minus(a: Pos, b: Pos) -> Pos:
    return a[0] - b[0], a[1] - b[1]
