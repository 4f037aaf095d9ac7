"""A demo inbox: the project's own templates filled the way counties fill them, mistakes included.

Figures follow Hainan's published ones (about 800 元 per hardship family, 1,000–2,000 元 per model
worker, tens to hundreds of households per county). The same seed gives the same files, byte for byte.
"""

from __future__ import annotations

import datetime as dt
import io
import os
import random
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.campaign import layout
from pipeline.campaign.config import Form, Rules, Unit
from pipeline.io import atomic
from pipeline.render import template, xlsxpatch

Values = dict[tuple[str, str, str], Any]  # (section, row, field) -> what the person typed

SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何林罗符云邢"
GIVEN = ["海涛", "建华", "秀英", "志强", "丽娟", "文斌", "春梅", "国庆", "小燕", "德明", "美玲", "少华"]


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


def _wan(cents: int) -> float:
    return round(cents / 100, 2)


def _split(total: int, weights: list[float], rng: random.Random) -> list[int]:
    """Split a whole number into parts roughly by weight, parts adding up exactly."""
    raw = [w * rng.uniform(0.6, 1.4) for w in weights]
    s = sum(raw) or 1.0
    parts = [int(total * r / s) for r in raw]
    parts[max(range(len(parts)), key=lambda i: raw[i])] += total - sum(parts)
    return parts


INDUSTRY_WEIGHTS = {
    "agri": 3.0, "mfg": 2.5, "utility": 0.6, "construction": 2.0, "trade": 1.5, "transport": 1.0,
    "hospitality": 1.5, "social": 1.0, "public_admin": 0.5, "other": 1.0,
}


def warmth_values(form: Form, unit: Unit, rng: random.Random, size: float, issue_date: dt.date) -> Values:
    """A correct 附件1: every rule of FORMS.md holds."""
    v: Values = {}
    visits = form.section("visits")
    rows = [r.code for r in visits.detail_rows]
    weights = [INDUSTRY_WEIGHTS.get(r, 1.0) for r in rows]
    households = _split(int(rng.uniform(60, 600) * size), weights, rng)
    totals: dict[str, int] = {f.code: 0 for f in visits.fields}
    for row, hh in zip(rows, households, strict=True):
        archived = int(hh * rng.uniform(0.55, 0.95))
        migrants = int(hh * rng.uniform(0.1, 0.6))
        models = rng.randint(0, max(1, hh // 25))
        frontline = int(hh * rng.uniform(0.5, 2.0))
        # 元 per head: ~800 per family, ~500 per migrant worker, 1,000–2,000 per model worker, ~300 frontline.
        yuan = hh * rng.uniform(700, 900) + migrants * 500 + models * rng.uniform(1000, 2000) + frontline * 300
        total_cents = int(round(yuan / 100))  # 元 → 万元 in cents: 1 万元 = 10,000 元 = 1,000,000 分/100
        goods = int(total_cents * rng.uniform(0.15, 0.3))
        cells = {
            "households": hh, "households_archived": archived, "migrant_workers": migrants,
            "model_workers": models, "frontline_workers": frontline,
            "amount_total": total_cents, "amount_cash": total_cents - goods, "amount_goods": goods,
        }
        for code, value in cells.items():
            money = visits.field(code).type == "money"
            v[("visits", row, code)] = _wan(value) if money else value
            totals[code] += value
    for code, value in totals.items():
        v[("visits", "total", code)] = _wan(value) if visits.field(code).type == "money" else value

    spent = totals["amount_total"]
    unspent = int(spent * rng.uniform(0.0, 0.08))
    fund_total = spent + unspent
    union_social = max(int(fund_total * rng.uniform(0.35, 0.5)), totals["amount_goods"] + 1)
    union = int(union_social * rng.uniform(0.6, 0.8))
    social = union_social - union
    central, provincial, local = _split(fund_total - union_social, [0.45, 0.3, 0.25], rng)
    to_daily = int(unspent * rng.uniform(0.0, 1.0))
    funds = {
        "fund_central": central, "fund_provincial": provincial, "fund_local": local, "fund_union": union,
        "fund_social": social, "fund_total": fund_total, "fund_unspent": unspent, "fund_unspent_to_daily": to_daily,
    }
    for code, cents in funds.items():
        v[("funds", "", code)] = _wan(cents)

    hh_total = totals["households"]
    acts = {
        "enterprises_visited": rng.randint(5, 40), "cadre_visits": rng.randint(10, 120),
        "forums": rng.randint(1, 12), "inspections": rng.randint(10, 150), "wage_cases": rng.randint(0, 30),
        "wages_recovered": _wan(rng.randint(0, 5000) * 10), "legal_aid": rng.randint(0, 25),
        "tickets": rng.randint(0, max(1, hh_total // 2)),
    }
    for code, figure in acts.items():
        v[("activities", "", code)] = figure
    _sign(v, rng, issue_date)
    return v


def center_values(form: Form, rng: random.Random, size: float, issue_date: dt.date) -> Values:
    """A correct 附件2."""
    v: Values = {}
    archived = int(rng.uniform(300, 3000) * size)
    v.update({
        ("archive", "", "archived_households"): archived,
        ("archive", "", "new_archived"): int(archived * rng.uniform(0.05, 0.25)),
        ("archive", "", "lifted_out"): int(archived * rng.uniform(0.05, 0.2)),
        ("archive", "", "staff"): rng.randint(3, 15),
        ("archive", "", "duty_days"): rng.randint(7, 24),
    })
    persons_total = amount_total = 0
    for row in form.section("aid").detail_rows:
        persons = rng.randint(0, 400)
        cents = int(persons * rng.uniform(300, 1500) / 100) if persons else 0
        v[("aid", row.code, "persons")] = persons
        v[("aid", row.code, "amount")] = _wan(cents)
        persons_total += persons
        amount_total += cents
    v[("aid", "total", "persons")] = persons_total
    v[("aid", "total", "amount")] = _wan(amount_total)
    referrals = rng.randint(20, 600)
    v.update({
        ("services", "", "hotline"): rng.randint(10, 500),
        ("services", "", "visits"): rng.randint(20, 900),
        ("services", "", "job_referrals"): referrals,
        ("services", "", "job_placed"): int(referrals * rng.uniform(0.2, 0.7)),
        ("services", "", "training"): rng.randint(0, 400),
        ("services", "", "online"): rng.randint(0, 200),
    })
    _sign(v, rng, issue_date)
    return v


def _sign(v: Values, rng: random.Random, issue_date: dt.date) -> None:
    def name() -> str:
        return rng.choice(SURNAMES) + rng.choice(GIVEN)

    v[("sign", "", "leader")] = name()
    v[("sign", "", "preparer")] = name()
    v[("sign", "", "phone")] = rng.choice(
        [f"0898-{rng.randint(62000000, 68999999)}", f"1{rng.choice('3589')}{rng.randint(100000000, 999999999)}"]
    )
    day = issue_date + dt.timedelta(days=rng.randint(20, 40))
    # People type dates every which way; the reader accepts all of these.
    v[("sign", "", "date")] = rng.choice(
        [dt.datetime.combine(day, dt.time()), f"{day.year}年{day.month}月{day.day}日", f"{day.year}.{day.month}.{day.day}",
         f"{day.year}-{day.month}-{day.day}", f"{day.year}/{day.month:02d}/{day.day:02d}"]
    )
    v[("sign", "", "note")] = None


# --- the classic mistakes (FORMS.md), each a change to a correct form -------------------------------------


def _total_not_adding_up(v: Values, rng: random.Random) -> str:
    # The county unprotected the sheet and typed its own 合计 over the formula.
    v[("visits", "total", "households")] = v[("visits", "total", "households")] + rng.randint(3, 30)
    return "表一合计行“慰问困难职工”与各行之和不符"


def _yuan_in_wanyuan(v: Values, rng: random.Random) -> str:
    for key in [k for k in v if k[0] == "visits" and k[2].startswith("amount_")]:
        v[key] = round(v[key] * 10000)
    return "表一慰问金额按“元”填写(应为万元)"


def _goods_from_fiscal_funds(v: Values, rng: random.Random) -> str:
    union_social = v[("funds", "", "fund_union")] + v[("funds", "", "fund_social")]
    goods = round(union_social + rng.uniform(5, 20), 2)
    v[("visits", "other", "amount_goods")] = round(v[("visits", "other", "amount_goods")] + goods, 2)
    v[("visits", "other", "amount_cash")] = round(v[("visits", "other", "amount_cash")] - goods, 2)
    if v[("visits", "other", "amount_cash")] < 0:
        v[("visits", "other", "amount_total")] = round(v[("visits", "other", "amount_total")] - v[("visits", "other", "amount_cash")], 2)
        v[("visits", "other", "amount_cash")] = 0.0
    _retotal(v, "amount_total", "amount_cash", "amount_goods")
    return "慰问品折款超过工会经费与社会筹集资金之和(财政资金发放实物)"


def _text_in_number(v: Values, rng: random.Random) -> str:
    v[("visits", "construction", "migrant_workers")] = "约" + str(v[("visits", "construction", "migrant_workers")])
    v[("activities", "", "forums")] = "见附件"
    return "数字栏填了文字(“约…”“见附件”)"


def _missing_preparer(v: Values, rng: random.Random) -> str:
    v[("sign", "", "preparer")] = None
    return "未填填表人"


def _messy_but_fine(v: Values, rng: random.Random) -> str:
    """What careful people still type: full-width digits, units, 无 for zero, numbers as text."""
    full = str.maketrans("0123456789.,", "０１２３４５６７８９．，")
    v[("visits", "agri", "households")] = str(v[("visits", "agri", "households")]).translate(full)
    v[("visits", "mfg", "households")] = f"{v[('visits', 'mfg', 'households')]}户"
    v[("visits", "trade", "amount_total")] = f"{v[('visits', 'trade', 'amount_total')]:.2f}万元"
    v[("activities", "", "legal_aid")] = "无"
    v[("activities", "", "inspections")] = f"{v[('activities', '', 'inspections')]:,}"
    return "全角数字、带单位、“无”等写法(应被接受)"


def _retotal(v: Values, *codes: str) -> None:
    for code in codes:
        rows = [k for k in v if k[0] == "visits" and k[2] == code and k[1] != "total"]
        v[("visits", "total", code)] = round(sum(v[k] for k in rows), 2)


MISTAKES: list[Callable[[Values, random.Random], str]] = [
    _total_not_adding_up, _yuan_in_wanyuan, _goods_from_fiscal_funds, _text_in_number, _missing_preparer,
]


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
                    sheet.write(cell.row - 1, cell.column - 1, value, xlwt.easyxf(num_format_str="yyyy-mm-dd"))
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
    """Fill the demo inbox: most units correct, a few with the classic mistakes, a few missing."""
    rng = random.Random(seed)
    issue = rules.campaign.issue_date
    direct = [u for u in rules.units if u.reports_to == "province"]
    # Who is late, who errs: drawn once from the seed, always leaving room for every scenario.
    order = list(direct)
    rng.shuffle(order)
    missing_all = order[0]  # sends nothing at all
    missing_center = order[1]  # sends 附件1 and the report, forgets 附件2
    missing_report = order[2]
    with_mistakes = order[3 : 3 + len(MISTAKES)]
    as_xls_unit = order[3 + len(MISTAKES)]
    messy_unit = order[4 + len(MISTAKES)]
    resubmitter = order[5 + len(MISTAKES)]
    demo = DemoInbox()
    first_day = issue + dt.timedelta(days=28)

    def put(folder_day: dt.date, name: str, data: bytes, unit: Unit, item: str, note: str) -> None:
        path = inbox / folder_day.isoformat() / name
        atomic.write_bytes(path, data)
        stamp = dt.datetime.combine(folder_day, dt.time(10, 0), tzinfo=rules.campaign.tz).timestamp()
        os.utime(path, (stamp, stamp))
        demo.files.append(DemoFile(path, unit.code, item, note))

    for index, unit in enumerate(direct):
        day = first_day + dt.timedelta(days=index % 10)
        size = 2.0 if unit.code in ("460100", "460200") else rng.uniform(0.4, 1.3)
        if unit is missing_all:
            demo.missing.extend((unit.code, item) for item in unit.items)
            continue
        for item in unit.items:
            form_code = rules.items[item].form
            if form_code is None:
                if unit is missing_report:
                    demo.missing.append((unit.code, item))
                    continue
                put(day, f"{unit.name}送温暖工作报告.docx", report_docx(unit, rules), unit, item, "书面报告")
                continue
            if form_code == "center" and unit is missing_center:
                demo.missing.append((unit.code, item))
                continue
            form = rules.forms[form_code]
            values = (
                warmth_values(form, unit, rng, size, issue) if form_code == "warmth"
                else center_values(form, rng, size, issue)
            )
            note = "填写正确"
            if form_code == "warmth" and unit in with_mistakes:
                note = MISTAKES[with_mistakes.index(unit)](values, rng)
            if form_code == "warmth" and unit is messy_unit:
                note = _messy_but_fine(values, rng)
            name = template.file_name(unit, form)
            if unit is as_xls_unit and form_code == "warmth":
                put(day, name[: -len(".xlsx")] + ".xls", as_xls(rules, form, unit, values), unit, item,
                    "另存为 .xls 格式,填写正确")
                continue
            if unit is resubmitter and form_code == "warmth":
                wrong = dict(values)
                wrong[("visits", "agri", "amount_total")] = round(wrong[("visits", "agri", "amount_total")] + 1.5, 2)
                _retotal(wrong, "amount_total")
                put(day, name, template.fill(rules, form, unit, wrong), unit, item, "第1版:慰问金额合计不等于慰问金与慰问品之和")
                put(day + dt.timedelta(days=5), f"{unit.aliases[0]}附件1(修改后).xlsx",
                    template.fill(rules, form, unit, values), unit, item, "第2版:已更正")
                continue
            put(day, name, template.fill(rules, form, unit, values), unit, item, note)

    # Industry unions report to the 帮扶中心, but one of them e-mails the province by mistake.
    stray = rules.children("ZX")[0] if rules.children("ZX") else None
    if stray is not None:
        form = rules.forms["warmth"]
        values = warmth_values(form, stray, rng, 0.3, issue)
        put(first_day + dt.timedelta(days=3), template.file_name(stray, form), template.fill(rules, form, stray, values),
            stray, "warmth", "产业工会直接报给了省总(应报帮扶中心)")
    return demo
