"""The summary draft (总结(初稿).md): the written report to the level above, its figures filled in from the
consolidation, for staff to edit and send. Rendered from templates/summary.md.j2; its opening, recipient
and paragraphs are rules.yaml's (`consolidation.summary`, `consolidation.paragraphs`).
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
    plan, camp = rules.consolidation.summary, rules.campaign
    top = c.parent == PROVINCE
    words = dict(
        year=local(rules, as_of).year,
        issuer=camp.issuer,
        document_number=camp.document_number,
        title=camp.title,
    )
    context["stamp"] = "终稿" if final else "草稿"
    context["opening"] = (plan.opening if top else plan.opening_below).format_map(words)
    context["practices"] = plan.practices.format_map(words)
    context["recipient"] = plan.recipient.format_map(words) if top else camp.issuer
    context["author"] = rules.campaign.issuer if c.parent == PROVINCE else rules.unit(c.parent).name
    context["date_cn"] = f"{local(rules, as_of):%Y年%m月%d日}".replace("年0", "年").replace("月0", "月")
    return render("summary.md.j2", **context)
