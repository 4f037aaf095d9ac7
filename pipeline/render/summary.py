"""The summary draft (总结(初稿).md): the written report to the federation above, its figures filled in
from the consolidation, for staff to edit and send. Rendered from templates/summary.md.j2.
"""

from __future__ import annotations

import datetime as dt

from pipeline.campaign.config import PROVINCE, Rules
from pipeline.consolidation.consolidate import Consolidation
from pipeline.consolidation.status import Status
from pipeline.render.env import render
from pipeline.render.words import local, overview


def summary_markdown(
    rules: Rules, c: Consolidation, status: Status, *, as_of: dt.datetime, final: bool
) -> str:
    """A draft of the written report to the federation above, figures filled in, for staff to edit."""
    context = overview(rules, c, status, as_of, final, edition=0)
    context["stamp"] = "终稿" if final else "草稿"
    context["year"] = local(rules, as_of).year
    context["province"] = c.parent == PROVINCE
    context["recipient"] = "中华全国总工会" if c.parent == PROVINCE else rules.campaign.issuer
    context["author"] = rules.campaign.issuer if c.parent == PROVINCE else rules.unit(c.parent).name
    context["date_cn"] = f"{local(rules, as_of):%Y年%m月%d日}".replace("年0", "年").replace("月0", "月")
    return render("summary.md.j2", **context)
