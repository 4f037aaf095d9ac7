"""Sheets described as values, for annotate.py: what 校验结果 holds, whichever way the copy is written."""

from __future__ import annotations

from dataclasses import dataclass

from openpyxl.styles import Alignment, Border, Font, PatternFill


@dataclass(frozen=True)
class Style:
    font: Font
    fill: PatternFill | None = None
    border: Border | None = None
    alignment: Alignment | None = None


@dataclass(frozen=True)
class Text:
    """A text cell of a new sheet; `link` is a place in this workbook ('Sheet'!A1) it links to."""

    row: int
    col: int
    text: str  # as it is to be shown: already cleaned of what XML cannot hold
    style: Style
    link: str = ""


@dataclass(frozen=True)
class PlainSheet:
    """A new sheet of text cells, printed A4 landscape and one page wide."""

    title: str
    texts: tuple[Text, ...]
    merged: tuple[str, ...] = ()
    heights: tuple[tuple[int, float], ...] = ()  # (row, points)
    widths: tuple[tuple[int, float], ...] = ()  # (column, characters)
    frozen_rows: int = 0  # rows that stay in view while scrolling
    title_rows: tuple[int, int] | None = None  # rows printed atop each page
