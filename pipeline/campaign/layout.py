"""Where every value of a form sits on its sheet: computed from the form's declaration alone.

The template writer draws this layout; the `_meta` sheet records it inside every template; the
reader uses it (and the labels it places) to find values again when a person has moved things.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.campaign.declared import Field, Form, Row, Section
from pipeline.model import column_letters

MIN_COLUMNS = 8  # the footer lays four label/value pairs across


@dataclass(frozen=True)
class Slot:
    """One input (or 合计) cell of a form."""

    section: Section
    row: Row | None
    field: Field
    cell: str  # A1 address
    row_label_cell: str  # where the row's label is (A column), or the field label for single values
    field_label_cell: str  # where the column caption is

    @property
    def key(self) -> tuple[str, str, str]:
        return self.section.code, self.row.code if self.row else "", self.field.code

    @property
    def is_total(self) -> bool:
        return self.row is not None and self.row.total


@dataclass(frozen=True)
class Block:
    """A drawn piece of a section: its title row, header rows and body rows (1-based sheet rows)."""

    section: Section
    title_row: int
    header_rows: tuple[int, ...]
    body_rows: tuple[int, ...]


@dataclass(frozen=True)
class Layout:
    form: Form
    ncols: int
    attachment_cell: str
    title_cell: str
    unit_label_cell: str
    unit_name_cell: str
    unit_name_end: str
    code_label_cell: str
    unit_code_cell: str
    money_unit_cell: str
    slots: tuple[Slot, ...]
    blocks: tuple[Block, ...]
    notes_row: int
    last_row: int

    @property
    def last_col(self) -> str:
        return column_letters(self.ncols)

    def slot(self, section: str, row: str, field: str) -> Slot:
        return next(s for s in self.slots if s.key == (section, row, field))

    def column_range(self, section: Section, field: Field) -> tuple[str, str]:
        """The detail cells of one column of a tabular section, first and last, as in E5:E14."""
        cells = [s.cell for s in self.slots if s.section is section and s.field is field and not s.is_total]
        return cells[0], cells[-1]


def compute(form: Form) -> Layout:
    """Where every slot of `form` is in its template; worked out once per form and kept with it (the
    reader and the checks ask for it for every file)."""
    return form.layout


def lay_out(form: Form) -> Layout:
    ncols = max(MIN_COLUMNS, 1 + max(len(s.fields) for s in form.sections if not s.footer))
    slots: list[Slot] = []
    blocks: list[Block] = []
    r = 5  # rows 1-4: 附件, title, 填报单位 line, a spacer
    for section in form.sections:
        if section.footer:
            r = _footer(section, r, ncols, slots, blocks)
        elif section.tabular:
            r = _table(section, r, slots, blocks)
        else:
            r = _single(section, r, slots, blocks)
        r += 1  # a spacer row between sections
    return Layout(
        form=form,
        ncols=ncols,
        attachment_cell="A1",
        title_cell="A2",
        unit_label_cell="A3",
        unit_name_cell="B3",
        unit_name_end="D3",
        code_label_cell="E3",
        unit_code_cell="F3",
        money_unit_cell=f"{column_letters(ncols)}3",
        slots=tuple(slots),
        blocks=tuple(blocks),
        notes_row=r,
        last_row=r + len(form.notes),
    )


def _table(section: Section, r: int, slots: list[Slot], blocks: list[Block]) -> int:
    title_row = r
    grouped = any(f.group for f in section.fields)
    headers = (r + 1, r + 2) if grouped else (r + 1,)
    caption_row = headers[-1]
    first = caption_row + 1
    body = tuple(range(first, first + len(section.rows)))
    for row, sheet_row in zip(section.rows, body, strict=True):
        for j, f in enumerate(section.fields, start=2):
            letters = column_letters(j)
            slots.append(
                Slot(section, row, f, f"{letters}{sheet_row}", f"A{sheet_row}", f"{letters}{caption_row}")
            )
    blocks.append(Block(section, title_row, headers, body))
    return body[-1] + 1


def _single(section: Section, r: int, slots: list[Slot], blocks: list[Block]) -> int:
    title_row, header, value = r, r + 1, r + 2
    for j, f in enumerate(section.fields, start=2):
        letters = column_letters(j)
        slots.append(Slot(section, None, f, f"{letters}{value}", f"{letters}{header}", f"{letters}{header}"))
    blocks.append(Block(section, title_row, (header,), (value,)))
    return value + 1


def _footer(section: Section, r: int, ncols: int, slots: list[Slot], blocks: list[Block]) -> int:
    """Label/value pairs across the page (单位负责人: ___ 填表人: ___ …); a wide field gets its own row."""
    body: list[int] = []
    row, c = r, 1
    for f in section.fields:
        if (f.wide or c + 1 > ncols) and c > 1:
            row, c = row + 1, 1
        label, value = f"{column_letters(c)}{row}", f"{column_letters(c + 1)}{row}"
        slots.append(Slot(section, None, f, value, label, label))
        if row not in body:
            body.append(row)
        if f.wide:
            row, c = row + 1, 1
        else:
            c += 2
    last = row if c > 1 else row - 1
    blocks.append(Block(section, r, (), tuple(body)))
    return last + 1
