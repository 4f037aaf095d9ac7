"""The one loader of `rules.yaml`: it turns the campaign declaration into typed, frozen objects.

Every later stage (templates, validation, consolidation, mail) reads the campaign from here and from
nowhere else. A mistake in the file is refused with its YAML path and a plain Chinese message. Of each
rule only what every kind shares is read here; `pipeline.checks.load` also compiles each rule's own part
(it is the loader to call: a bad rule is refused there, at load time, with its path too).
"""

from __future__ import annotations

import functools
import hashlib
import math
import re
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pipeline.campaign import consolidation_plan, demo_plan, yamlfile
from pipeline.campaign import units as units_section
from pipeline.campaign.declared import (
    PROVINCE,
    Campaign,
    Field,
    Form,
    Item,
    Limits,
    Mail,
    Row,
    Rule,
    Section,
    Unit,
)
from pipeline.campaign.node import CODE_RE, ConfigError, Node, choice, optional_text, unique
from pipeline.model import Severity

__all__ = [  # the campaign's face: load() and what it returns
    "CODE_RE",
    "PROVINCE",
    "Campaign",
    "ConfigError",
    "Field",
    "Form",
    "Item",
    "Limits",
    "Mail",
    "Node",
    "Row",
    "Rule",
    "Rules",
    "Section",
    "Unit",
    "load",
    "loads",
]

FIELD_TYPES = ("count", "money", "text", "phone", "date")
RULE_KEYS = (
    "id",
    "severity",
    "kind",
    "message",
    "form",
    "forms",
)  # every kind's; pipeline.checks knows the rest
TLS_MODES = ("ssl", "starttls", "none")


@dataclass(frozen=True, eq=False)  # compared and hashed by identity: caches key on the loaded campaign
class Rules:
    """The whole campaign as declared in rules.yaml."""

    campaign: Campaign
    items: Mapping[str, Item]
    unit_kinds: tuple[str, ...]
    units: tuple[Unit, ...]
    forms: Mapping[str, Form]
    rules: tuple[Rule, ...]
    mail: Mail
    tolerance: float
    source: Path
    sha256: str
    warnings: tuple[str, ...] = field(default=())
    limits: Limits = field(default=Limits())
    consolidation: consolidation_plan.Plan = field(
        default_factory=consolidation_plan.Plan
    )  # `consolidation:`
    demo: demo_plan.Plan = field(default_factory=demo_plan.Plan)  # `demo:`

    def unit(self, code: str) -> Unit:
        try:
            return self._units_by_code[code]
        except KeyError:
            raise KeyError(code) from None

    def has_unit(self, code: str) -> bool:
        return code in self._units_by_code

    def find_unit(self, text: str) -> Unit | None:
        """The unit a person means by `text`: its code (zx for ZX too), its name or one of its aliases."""
        text = text.strip()
        if text in self._units_by_code:
            return self._units_by_code[text]
        for unit in self.units:
            if text.upper() == unit.code.upper() or text == unit.name or text in unit.aliases:
                return unit
        return None

    def children(self, parent: str) -> tuple[Unit, ...]:
        return self._children.get(parent, ())

    def item_for_form(self, form: str) -> Item:
        return self._item_of_form[form]

    # Looked up for every file and every row of the consolidation: indexed once (3,000 units nationally).
    @functools.cached_property
    def _units_by_code(self) -> dict[str, Unit]:
        return {u.code: u for u in self.units}

    @functools.cached_property
    def _children(self) -> dict[str, tuple[Unit, ...]]:
        out: dict[str, list[Unit]] = {}
        for u in self.units:
            out.setdefault(u.reports_to, []).append(u)
        return {parent: tuple(units) for parent, units in out.items()}

    @functools.cached_property
    def _item_of_form(self) -> dict[str, Item]:
        out: dict[str, Item] = {}
        for i in self.items.values():
            if i.form is not None:
                out.setdefault(i.form, i)
        return out

    def rollup_items(self) -> tuple[Item, ...]:
        """The items a unit with units below it makes by summing theirs."""
        return tuple(i for i in self.items.values() if i.rollup and i.form is not None)

    def units_owing_form(self, form: str) -> tuple[Unit, ...]:
        item = self.item_for_form(form)
        return tuple(u for u in self.units if u.owes(item.code))

    def notes_for(self, form: Form, unit: Unit) -> tuple[str, ...]:
        """The form's notes as `unit` reads them in its own template: where it sends the form, by when,
        with which other items (see NOTE_PLACEHOLDERS)."""
        deadline = self.campaign.deadline
        others = [self.items[i].label for i in unit.items if self.items[i].form != form.code]
        values = {
            "deadline": f"{deadline.year}年{deadline.month}月{deadline.day}日",
            "send_to": self.name_of(unit.reports_to),
            "address": self.address_of(unit.reports_to),
            "with_others": f"连同{'、'.join(others)}" if others else "",
            "phone": self.campaign.contact_phone,
        }
        return tuple(note.format_map(values) for note in form.notes)

    def address_of(self, level: str) -> str:
        """Where the units of `level` (the province, or a unit with units below it) send their forms."""
        if level == PROVINCE:
            return self.mail.reply_to_address
        unit = self.unit(level)
        return unit.mailbox or unit.email

    def name_of(self, level: str) -> str:
        """Who receives the forms of `level`: the issuer, or the unit."""
        return self.campaign.issuer + self.campaign.department if level == PROVINCE else self.unit(level).name

    def explanation_key(self, form: str) -> tuple[str, str, str] | None:
        """Where a form's explanation field (`explains: true`, 填报说明) is, if it has one."""
        return next(
            (
                (s.code, "", f.code)
                for s in self.forms[form].sections
                if not s.tabular
                for f in s.fields
                if f.explains
            ),
            None,
        )


# --- sections of the file ----------------------------------------------------------------------------


def _campaign(node: Node, warnings: list[str]) -> Campaign:
    node.keys(
        (
            "id",
            "title",
            "issuer",
            "department",
            "document_number",
            "issue_date",
            "statistics_year",
            "deadline",
            "timezone",
            "contact_phone",
        )
    )
    tz_node = node.get("timezone")
    tz_name = tz_node.text()
    try:
        tz = ZoneInfo(tz_name)
    except (ZoneInfoNotFoundError, ValueError):
        raise tz_node.fail(f'未知时区 "{tz_name}",例如 Asia/Shanghai') from None
    deadline = node.get("deadline").datetime()
    deadline = deadline.replace(tzinfo=tz) if deadline.tzinfo is None else deadline.astimezone(tz)
    issue_date = node.get("issue_date").date()
    if deadline.date() < issue_date:
        warnings.append(
            f"campaign.deadline: 截止时间 {deadline:%Y-%m-%d} 早于发文日期 {issue_date:%Y-%m-%d},请核对是否笔误"
        )
    return Campaign(
        id=node.get("id").text(),
        title=node.get("title").text(),
        issuer=node.get("issuer").text(),
        department=optional_text(node, "department"),
        document_number=node.get("document_number").text(),
        issue_date=issue_date,
        statistics_year=node.get("statistics_year").integer(),
        deadline=deadline,
        timezone=tz_name,
        contact_phone=optional_text(node, "contact_phone"),
    )


def _items(node: Node) -> dict[str, Item]:
    items: dict[str, Item] = {}
    for code, n in node.items():
        n.keys(("label", "form", "extensions", "rollup"))
        form = n.get("form", required=False)
        ext = n.get("extensions", required=False)
        rollup = n.get("rollup", required=False)
        items[Node(code, n.path).code()] = Item(
            code=code,
            label=n.get("label").text(),
            form=form.code() if form.value is not None else None,
            extensions=tuple(e.lower() for e in ext.strings()) if ext.value is not None else (),
            rollup=rollup.boolean() if rollup.value is not None else False,
        )
        if items[code].rollup and items[code].form is None:
            raise rollup.fail("只有报表(form)才能由下级汇总生成")
    return items


def _field(node: Node) -> Field:
    node.keys(("code", "label", "type", "unit", "required", "min", "max", "group", "wide", "explains"))
    ftype = node.get("type")
    t = ftype.text()
    if t not in FIELD_TYPES:
        raise ftype.fail(f'未知类型 "{t}",可选:{", ".join(FIELD_TYPES)}')

    def opt(key: str) -> Node:
        return node.get(key, required=False)

    return Field(
        code=node.get("code").code(),
        label=node.get("label").text(),
        type=t,
        unit=opt("unit").text() if opt("unit").value is not None else "",
        required=opt("required").boolean() if opt("required").value is not None else True,
        min=opt("min").number()
        if opt("min").value is not None
        else (0.0 if t in ("count", "money") else None),
        max=opt("max").number() if opt("max").value is not None else None,
        group=opt("group").text() if opt("group").value is not None else "",
        wide=opt("wide").boolean() if opt("wide").value is not None else False,
        explains=opt("explains").boolean() if opt("explains").value is not None else False,
    )


def _section(code: str, node: Node) -> Section:
    node.keys(("title", "fields", "rows", "row_header", "value_label", "footer"))
    field_nodes = node.get("fields").seq()
    fields = tuple(_field(n) for n in field_nodes)
    unique([n.get("code") for n in field_nodes], [f.code for f in fields], "字段代码")
    rows: tuple[Row, ...] = ()
    rows_node = node.get("rows", required=False)
    if rows_node.value is not None:
        row_nodes = rows_node.seq()
        parsed = []
        for rn in row_nodes:
            rn.keys(("code", "label", "total"))
            total = rn.get("total", required=False)
            parsed.append(
                Row(
                    rn.get("code").code(),
                    rn.get("label").text(),
                    total.boolean() if total.value is not None else False,
                )
            )
        unique([rn.get("code") for rn in row_nodes], [r.code for r in parsed], "行代码")
        if sum(r.total for r in parsed) > 1:
            raise rows_node.fail("只能有一个合计行")
        rows = tuple(parsed)

    def text(key: str) -> str:
        n = node.get(key, required=False)
        return n.text() if n.value is not None else ""

    footer = node.get("footer", required=False)
    return Section(
        code=Node(code, node.path).code(),
        title=text("title"),
        fields=fields,
        rows=rows,
        row_header=text("row_header"),
        value_label=text("value_label"),
        footer=footer.boolean() if footer.value is not None else False,
    )


def _form(code: str, node: Node) -> Form:
    node.keys(("attachment", "title", "sheet", "version", "sections", "notes"))
    sections = tuple(_section(c, n) for c, n in node.get("sections").items())
    if not sections:
        raise node.get("sections").fail("至少要有一节")
    sheet = node.get("sheet").text()
    if len(sheet) > 31 or re.search(r"[\[\]:*?/\\]", sheet) or sheet == "_meta":
        raise node.get("sheet").fail(f'工作表名 "{sheet}" 不可用:最长 31 个字符,不能含 []:*?/\\')
    notes = node.get("notes", required=False)
    return Form(
        code=Node(code, node.path).code(),
        attachment=node.get("attachment").text(),
        title=node.get("title").text(),
        sheet=sheet,
        version=node.get("version").text(),
        sections=sections,
        notes=tuple(_note(n) for n in notes.seq()) if notes.value is not None else (),
    )


# What a form's note may name, filled for each unit's own template (Rules.notes_for).
NOTE_PLACEHOLDERS = ("deadline", "send_to", "address", "with_others", "phone")


def _note(node: Node) -> str:
    text = node.text()
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        raise node.fail("花括号 { } 不配对;要写花括号本身请写成 {{ }}") from None
    unknown = sorted(names - set(NOTE_PLACEHOLDERS))
    if unknown:
        raise node.fail(
            f"未知的占位符 {{{unknown[0]}}},可用:{'、'.join('{' + n + '}' for n in NOTE_PLACEHOLDERS)}"
        )
    return text


def _rule(node: Node, index: int, forms: Mapping[str, Form]) -> Rule:
    """The common part of a rule; pipeline.checks parses the rest for its kind and refuses unknown keys."""
    node.mapping()
    severity = Severity(choice(node.get("severity"), tuple(Severity), "严重程度"))
    form_codes: tuple[str, ...] = ()
    if node.get("form", required=False).value is not None:
        form_codes = (node.get("form").text(),)
        where = node.get("form")
    elif node.get("forms", required=False).value is not None:
        form_codes = node.get("forms").strings()
        where = node.get("forms")
    for fc in form_codes:
        if fc not in forms:
            raise where.fail(f'规则引用了不存在的报表 "{fc}",已有:{", ".join(forms)}')
    return Rule(
        id=node.get("id").text(),
        severity=severity,
        kind=node.get("kind").text(),
        message=node.get("message").text(),
        forms=form_codes,
        index=index,
        node=node,
    )


IMAP_KEYS = ("imap_host", "imap_port", "imap_tls", "imap_user", "imap_password_env", "imap_folder")
ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def _mail(node: Node) -> Mail:
    node.keys(
        (
            "sender",
            "reply_to",
            "smtp_host",
            "smtp_port",
            "tls",
            "username",
            "password_env",
            "send_seconds",
            *IMAP_KEYS,
        )
    )
    for key in ("sender", "reply_to"):
        value = node.get(key).text()
        if "\n" in value or "\r" in value:
            raise node.get(key).fail("不能含换行")
    port = node.get("smtp_port")
    if not 0 < port.integer() < 65536:
        raise port.fail(f"端口 {port.value} 不在 1–65535 之间")
    env = node.get("password_env").text()
    if not ENV_NAME.fullmatch(env):
        raise node.get("password_env").fail("应为环境变量的名字(如 SMTP_PASSWORD),不要把密码本身写在这里")
    username = node.get("username", required=False)
    seconds = node.get("send_seconds", required=False)
    if seconds.value is not None and not 0 < seconds.number() <= 86400:
        raise seconds.fail(f"应为 1 到 86400 之间的秒数,实际是 {seconds.value!r}")
    return Mail(
        send_seconds=seconds.number() if seconds.value is not None else 300,
        sender=node.get("sender").text(),
        reply_to=node.get("reply_to").text(),
        smtp_host=node.get("smtp_host").text(),
        smtp_port=port.integer(),
        tls=choice(node.get("tls"), TLS_MODES, "加密方式"),
        username=username.text() if username.value is not None else "",
        password_env=env,
        **_imap(node),
    )


def _imap(node: Node) -> dict[str, Any]:
    """The mailbox keys of `mail:`: all or none (imap_folder and imap_port have defaults)."""
    if node.get("imap_host", required=False).value is None:
        for key in IMAP_KEYS:
            if node.get(key, required=False).value is not None:
                raise node.get(key).fail("要收取邮箱,请同时填写 imap_host(收信服务器);不收取邮箱时请删去此项")
        return {}
    tls = choice(node.get("imap_tls"), TLS_MODES, "加密方式")
    port = node.get("imap_port", required=False)
    if port.value is not None and not 0 < port.integer() < 65536:
        raise port.fail(f"端口 {port.value} 不在 1–65535 之间")
    env = node.get("imap_password_env")
    if not ENV_NAME.fullmatch(env.text()):
        raise env.fail("应为环境变量的名字(如 IMAP_PASSWORD),不要把密码本身写在这里")
    folder = node.get("imap_folder", required=False)
    name = folder.text() if folder.value is not None else "INBOX"
    if not name or any(c in name for c in '\r\n"*%'):
        raise folder.fail(f"邮箱文件夹名 {name!r} 不可用(不能为空,不能含换行、引号、* 或 %)")
    return dict(
        imap_host=node.get("imap_host").text(),
        imap_tls=tls,
        imap_port=port.integer() if port.value is not None else (993 if tls == "ssl" else 143),
        imap_user=node.get("imap_user").text(),
        imap_password_env=env.text(),
        imap_folder=name,
    )


# The reader alone (Python, calamine, the rules) peaks near 100 MB resident (bench/hostile.py); below this
# limit ordinary forms would start failing as F-too-large.
MIN_WORKER_MEMORY_MB = 256


def _limits(node: Node) -> Limits:
    if node.value is None:
        return Limits()
    fields = ("max_file_mb", "max_unzipped_mb", "max_ratio", "worker_memory_mb", "worker_seconds")
    node.keys(fields)
    values: dict[str, Any] = {}
    for key in fields:
        n = node.get(key, required=False)
        if n.value is None:
            continue
        number = n.integer() if key == "worker_memory_mb" else n.number()
        if not 0 < number < math.inf:
            raise n.fail(f"应为大于 0 的数,实际是 {n.value!r}")
        if key == "worker_memory_mb" and number < MIN_WORKER_MEMORY_MB:
            raise n.fail(f"至少要 {MIN_WORKER_MEMORY_MB} MB,否则连正常的报表也可能读不出来")
        values[key] = number
    return Limits(**values)


# --- the loader --------------------------------------------------------------------------------------


def load(path: str | Path = "rules.yaml") -> Rules:
    """Load and check rules.yaml; raise ConfigError naming the YAML path of the first mistake."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError("", f"无法读取配置文件 {path}:{exc.strerror}") from None
    return loads(raw, source=path)


def loads(raw: bytes | str, source: Path = Path("rules.yaml")) -> Rules:
    data = raw.encode("utf-8") if isinstance(raw, str) else raw
    try:
        parsed = yamlfile.parse(data, source.name)
    except yamlfile.YamlError as exc:
        raise ConfigError(exc.path, exc.message) from None
    root = Node(parsed, "")
    root.keys(
        (
            "campaign",
            "items",
            "unit_kinds",
            "units",
            "units_file",
            "shared",
            "forms",
            "tolerance",
            "rules",
            "mail",
            "limits",
            "consolidation",
            "demo",
        )
    )
    warnings: list[str] = []
    campaign = _campaign(root.get("campaign"), warnings)
    forms = {f.code: f for f in (_form(c, n) for c, n in root.get("forms").items())}
    items = _items(root.get("items"))
    for code, item in items.items():
        if item.form is not None and item.form not in forms:
            raise ConfigError(f"items.{code}.form", f'不存在的报表 "{item.form}",已有:{", ".join(forms)}')

    digest = hashlib.sha256(data)
    kinds = root.get("unit_kinds").strings()
    units, units_raw = units_section.read(root, source.parent, kinds, items)
    digest.update(units_raw)

    tolerance = root.get("tolerance", required=False)
    rule_nodes = root.get("rules").seq()
    rules = tuple(_rule(n, i, forms) for i, n in enumerate(rule_nodes))
    consolidation, demo = _declared(root, forms, items, {r.id for r in rules})
    return Rules(
        campaign=campaign,
        items=items,
        unit_kinds=kinds,
        units=units,
        forms=forms,
        rules=rules,
        mail=_mail(root.get("mail")),
        tolerance=tolerance.number() if tolerance.value is not None else 0.01,
        source=source,
        sha256=digest.hexdigest(),
        warnings=tuple(warnings),
        limits=_limits(root.get("limits", required=False)),
        consolidation=consolidation,
        demo=demo,
    )


def _declared(
    root: Node, forms: Mapping[str, Form], items: Mapping[str, Item], rule_ids: set[str]
) -> tuple[consolidation_plan.Plan, demo_plan.Plan]:
    """The `consolidation:` and `demo:` sections, each read by its own module of the loader."""
    return (
        consolidation_plan.parse(root.get("consolidation", required=False), forms),
        demo_plan.parse(root.get("demo", required=False), forms, items, rule_ids),
    )
