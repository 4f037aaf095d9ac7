"""The units of rules.yaml (its `units:` list, or the CSV/XLSX file `units_file:` names): who reports, to
whom, what each owes, where each sends its forms, and the checks that keep that a tree."""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from pipeline.campaign.declared import PROVINCE, Item, Unit
from pipeline.campaign.node import ConfigError, Node, unique
from pipeline.model import EMAIL_ADDRESS


def read(
    root: Node, base: Path, kinds: tuple[str, ...], items: Mapping[str, Item]
) -> tuple[tuple[Unit, ...], bytes]:
    """The units, checked, and the bytes of the units file if there is one (they are part of the campaign's
    digest). `base` is the folder a relative units_file is found from."""
    units_raw = b""
    if root.get("units_file", required=False).value is not None:
        if root.get("units", required=False).value is not None:
            raise ConfigError("units_file", "units 与 units_file 只能二选一")
        unit_nodes, units_raw = _units_file(root.get("units_file"), base)
    else:
        unit_nodes = root.get("units").seq()
    units = tuple(_unit_from_mapping(n) for n in unit_nodes)
    unique([n.get("code") for n in unit_nodes], [u.code for u in units], "单位代码")
    codes = {u.code for u in units}
    for n, u in zip(unit_nodes, units, strict=True):
        if u.reports_to != PROVINCE and u.reports_to not in codes:
            raise n.get("reports_to").fail(
                f'上级单位 "{u.reports_to}" 不在单位列表中(直报省总的写 {PROVINCE})'
            )
        if u.reports_to == u.code:
            raise n.get("reports_to").fail("单位不能向自己报送")
        if u.kind not in kinds:
            raise n.get("kind").fail(f'单位类别 "{u.kind}" 不在 unit_kinds 中:{", ".join(kinds)}')
        for owed in u.items:
            if owed not in items:
                raise n.get("items").fail(f'未知的报送事项 "{owed}",可选:{", ".join(items)}')
    _check_aliases(unit_nodes, units)
    _check_chains(unit_nodes, units)
    return units, units_raw


def _address(node: Node) -> str:
    email = node.text()
    if not EMAIL_ADDRESS.fullmatch(email):
        raise node.fail(f'电子邮箱 "{email}" 格式不对')
    return email


def _unit_from_mapping(node: Node) -> Unit:
    node.keys(("code", "name", "kind", "reports_to", "items", "email", "aliases", "mailbox"))
    email = _address(node.get("email"))
    mailbox = node.get("mailbox", required=False)
    aliases = node.get("aliases", required=False)
    return Unit(
        mailbox=_address(mailbox) if mailbox.value is not None else "",
        code=node.get("code").code(),
        name=node.get("name").text(),
        kind=node.get("kind").text(),
        reports_to=node.get("reports_to").text(),
        items=node.get("items").strings(),
        email=email,
        aliases=aliases.strings() if aliases.value is not None else (),
    )


UNIT_COLUMNS = ("code", "name", "kind", "reports_to", "items", "email", "aliases", "mailbox")


def _units_file(node: Node, base: Path) -> tuple[list[Node], bytes]:
    """Read the contact list staff keep in Excel or CSV into nodes that locate each cell."""
    path = base / node.text()
    if not path.is_file():
        raise node.fail(f"找不到单位通讯录文件 {path}")
    raw = path.read_bytes()
    rows: list[list[Any]]
    if path.suffix.lower() == ".csv":
        text = raw.decode("utf-8-sig") if not raw.startswith(b"\xff\xfe") else raw.decode("utf-16")
        rows = [r for r in csv.reader(io.StringIO(text))]
    else:
        from python_calamine import CalamineWorkbook

        try:
            book = CalamineWorkbook.from_filelike(io.BytesIO(raw))
            rows = book.get_sheet_by_index(0).to_python(skip_empty_area=False)
        except Exception as exc:  # calamine raises several exception types for unreadable files
            raise node.fail(f"单位通讯录 {path.name} 无法读取:{exc}") from None
    if not rows:
        raise node.fail(f"单位通讯录 {path.name} 是空的")
    header = [str(h).strip().lower() for h in rows[0]]
    missing = [c for c in UNIT_COLUMNS if c not in header and c not in ("aliases", "mailbox")]
    if missing:
        raise node.fail(f"单位通讯录 {path.name} 第1行缺少列:{', '.join(missing)}")
    nodes = []
    for i, r in enumerate(rows[1:], start=2):
        values = {h: (r[j] if j < len(r) else "") for j, h in enumerate(header) if h in UNIT_COLUMNS}
        if not any(str(v).strip() for v in values.values()):
            continue
        for k, v in values.items():
            if isinstance(v, float) and v.is_integer():
                values[k] = str(int(v))  # a code like 460100 typed as a number
            elif v == "":
                values[k] = None
            else:
                values[k] = str(v)
        nodes.append(Node(values, f"{node.path}({path.name} 第{i}行)"))
    return nodes, raw


def _check_chains(nodes: list[Node], units: tuple[Unit, ...]) -> None:
    """Every unit's chain of parents ends at the province: a cycle would leave its forms with nowhere to go."""
    parent = {u.code: u.reports_to for u in units}
    for n, u in zip(nodes, units, strict=True):
        seen, code = [u.code], u.reports_to
        while code != PROVINCE:
            if code in seen:
                chain = " → ".join([*seen, code])
                raise n.get("reports_to").fail(f"上级单位形成了循环({chain}),报表将无处可报")
            seen.append(code)
            code = parent[code]


def _check_aliases(nodes: list[Node], units: tuple[Unit, ...]) -> None:
    """An alias that names two units would make file names ambiguous; refuse it at load time."""
    owner: dict[str, str] = {}
    for n, u in zip(nodes, units, strict=True):
        for alias in (u.name, *u.aliases):
            if alias in owner and owner[alias] != u.code:
                raise n.get("aliases").fail(f'别名 "{alias}" 同时属于单位 {owner[alias]} 和 {u.code}')
            owner[alias] = u.code
