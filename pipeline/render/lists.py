"""The consolidated workbook's list sheets (报送情况, 校验问题, 数据来源): who reported what, what the checks
found, and every file used; each a function of the workbook being built (`workbook._Book`).
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any

from openpyxl.styles import PatternFill

from pipeline.campaign.config import PROVINCE
from pipeline.campaign.consolidation_plan import PROBLEMS_SHEET, SOURCES_SHEET, STATUS_SHEET
from pipeline.consolidation import status as states
from pipeline.consolidation.status import FAILED, MISSING, OVERDUE, PASSED, RECEIVED, WARNED
from pipeline.model import RETURN, Verdict
from pipeline.render.sheets import (
    CENTER_ALIGN,
    DATETIME_FORMAT,
    LEFT_ALIGN,
    TITLE_ROWS,
    TOP_LEFT,
    Sheet,
    headers,
    heading,
    name_width,
    page,
    put_text,
)
from pipeline.render.words import naive, when

if TYPE_CHECKING:
    from pipeline.render.workbook import _Book

STATE_FILLS = {
    PASSED: PatternFill("solid", fgColor="E2EFDA"),
    WARNED: PatternFill("solid", fgColor="FFF2CC"),
    FAILED: PatternFill("solid", fgColor="F8CBAD"),
    MISSING: PatternFill("solid", fgColor="F8CBAD"),
    OVERDUE: PatternFill("solid", fgColor="F8CBAD"),
    RECEIVED: PatternFill("solid", fgColor="E2EFDA"),
    states.EXPLAINED: PatternFill("solid", fgColor="E2EFDA"),
    states.ACCEPTED: PatternFill("solid", fgColor="DDEBF7"),
    states.RETURNED: PatternFill("solid", fgColor="F8CBAD"),
}


# 报送情况
def status_sheet(book: _Book) -> None:
    rules = book.rules
    ws = book.sheet(STATUS_SHEET)
    heads = ["单位", "单位代码", "类别", "报送事项", "状态", "收到时间", "版本数", "汇总采用版本", "备注"]
    ncols = len(heads)
    deadline = when(rules, book.status.deadline)
    heading(ws, ncols, f"{rules.campaign.title}报送情况", f"{book.info}    报送截止:{deadline}", money=False)
    body = headers(ws, TITLE_ROWS + 1, [[h] for h in heads])
    ws.heights[body - 1] = 22
    r = body
    for s in book.status.rows:
        note = ";".join(x for x in (s.note, s.mail_problem) if x)
        cells: list[Any] = [
            s.unit_name,
            s.unit,
            s.kind,
            s.item_label,
            s.state.label,
            s.received,
            s.versions,
            f"第{s.version_used}版" if s.version_used else "",
            note,
        ]
        _status_row(book, ws, r, cells, STATE_FILLS.get(s.state))
        r += 1
    for v in book.status.stray:
        try:
            unit = book.units[v.unit]
            name, kind, where = unit.name, unit.kind, unit.reports_to
        except KeyError:
            name, kind, where = v.unit, "", ""
        label = rules.items[v.item].label if v.item in rules.items else v.item
        upper = book.units[where].name if where and where != PROVINCE else "上级单位"
        cells = [
            name,
            v.unit,
            kind,
            label,
            "报错地方",
            v.received,
            1,
            "",
            f"{v.file}:应报送{upper},不计入本级汇总",
        ]
        _status_row(book, ws, r, cells, STATE_FILLS[FAILED])
        r += 1
    names = [s.unit_name for s in book.status.rows]
    page(ws, ncols, body - 1, [name_width(names), 10, 9, 16, 9, 17, 7, 12, 46], freeze=f"B{body}")


def _status_row(book: _Book, ws: Sheet, r: int, cells: list[Any], fill: PatternFill | None) -> None:
    for j, value in enumerate(cells, start=1):
        align = LEFT_ALIGN if j in (1, 9) else CENTER_ALIGN
        fill_j = fill if j == 5 else None
        if isinstance(value, dt.datetime):
            fmt = ws.look(align=align, fill=fill_j, number_format=DATETIME_FORMAT)
            ws.place(r, j, naive(book.rules, value), fmt)
        elif isinstance(value, int):
            ws.place(r, j, value, ws.look(align=align, fill=fill_j, number_format="0"))
        else:
            ws.text(r, j, value, ws.look(align=align, fill=fill_j))


# 校验问题
def problems_sheet(book: _Book) -> None:
    ws = book.sheet(PROBLEMS_SHEET)
    heads = ["单位", "文件", "严重程度", "工作表", "单元格", "问题说明"]  # no rule codes: people read it
    ncols = len(heads)
    heading(ws, ncols, "各单位报表校验问题", book.info, money=False)
    body = headers(ws, TITLE_ROWS + 1, [[h] for h in heads])
    ws.heights[body - 1] = 22
    r = body
    for p in book.problems:
        f = p.finding
        cells = [
            p.unit_name,
            p.file,
            f.severity.label,
            f.sheet,
            f.cell,
            f.message,
        ]
        for j, value in enumerate(cells, start=1):
            put_text(
                ws,
                r,
                j,
                value,
                align=TOP_LEFT if j in (1, 2, 6) else CENTER_ALIGN,
                size=9,
                color="C00000" if j == 3 and f.is_error else None,
            )
        r += 1
    if not book.problems:
        ws.merge(r, 1, r, ncols)
        ws.put(r, 1, "没有未解决的校验问题。", align=LEFT_ALIGN)
    names = [p.unit_name for p in book.problems] or ["单位"]
    page(ws, ncols, body - 1, [name_width(names, cap=30), 30, 9, 14, 8, 72], freeze=f"A{body}")


# 数据来源
def sources_sheet(book: _Book) -> None:
    rules, c = book.rules, book.c
    ws = book.sheet(SOURCES_SHEET)
    heads = ["单位", "单位代码", "报表", "文件名", "SHA-256", "收到时间", "版本", "是否采用"]
    ncols = len(heads)
    heading(ws, ncols, "汇总数据来源", book.info, money=False)
    body = headers(ws, TITLE_ROWS + 1, [[h] for h in heads])
    ws.heights[body - 1] = 22
    position = {u.code: i for i, u in enumerate(rules.units)}
    form_order = {code: i for i, code in enumerate(rules.forms)}
    used = {v.id for v in c.used}
    in_level = {u.code for u in rules.children(c.parent)}
    aligns = [LEFT_ALIGN if j in (1, 3, 4, 5, 8) else CENTER_ALIGN for j in range(1, ncols + 1)]
    texts = [ws.look(align=align, size=9) for align in aligns]
    r = body
    for v in sorted(
        book.sources,
        key=lambda v: (
            position.get(v.unit, len(position)),
            v.unit,
            form_order.get(v.form or "", len(form_order)),
            v.version,
            v.received,
            v.sha256,
        ),
    ):
        try:
            name = book.units[v.unit].name
        except KeyError:
            name = v.unit
        form = rules.forms.get(v.form or "")
        taken = states.taken_under(v)
        if v.verdict == Verdict.RECEIVED:
            verdict = "已收到(书面材料,不参加汇总)"
        elif v.kind == "report":
            verdict = "".join(f.message for f in v.findings[:1]) or Verdict.UNREADABLE.label
        elif v.id in used:
            verdict = f"采用({states.state_of(v).label}:{taken})" if taken else "采用"
        elif v.unit not in in_level:
            verdict = "不采用:不是本级应报单位"
        elif v.review is not None and v.review.action == RETURN:
            verdict = f"不采用:退回:{taken}"
        elif v.verdict != Verdict.ACCEPTED:
            verdict = "不采用:未通过校验"
        else:
            verdict = "不采用:已有更新版本"
        cells: list[Any] = [
            name,
            v.unit,
            f"{form.attachment} {form.title}" if form else getattr(rules.items.get(v.item), "label", v.item),
            v.file,
            v.sha256,
            v.received,
            f"第{v.version}版",
            verdict,
        ]
        for j, (value, align, fmt) in enumerate(zip(cells, aligns, texts, strict=True), start=1):
            if isinstance(value, dt.datetime):
                when = ws.look(number_format=DATETIME_FORMAT, align=align, size=9)
                ws.place(r, j, naive(rules, value), when)
            else:
                ws.text(r, j, value, fmt)
        r += 1
    names = [book.units[v.unit].name for v in c.used] or ["单位"]
    page(ws, ncols, body - 1, [name_width(names, cap=30), 9, 30, 40, 36, 16, 7, 20], freeze=f"A{body}")
