"""Reading rules.yaml's parsed tree: `Node` carries each value with its YAML path, so every complaint about
the file says where; `ConfigError` is that complaint. The loader (config.py), the plans and the rule kinds
(pipeline.checks) all read their sections with it."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator
from typing import Any

CODE_RE = re.compile(r"^[A-Za-z][A-Za-z0-9_]*$")


class ConfigError(Exception):
    """A mistake in rules.yaml (or the units file it names), located by its YAML path."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}" if path else message)


class Node:
    """A value of the parsed YAML together with its path, so every complaint can say where (pipeline.checks
    parses each rule's own keys with it)."""

    def __init__(self, value: Any, path: str):
        self.value = value
        self.path = path

    def fail(self, message: str) -> ConfigError:
        return ConfigError(self.path, message)

    def _child_path(self, key: str | int) -> str:
        if isinstance(key, int):
            return f"{self.path}[{key}]"
        return f"{self.path}.{key}" if self.path else key

    def mapping(self) -> dict[str, Any]:
        if not isinstance(self.value, dict):
            raise self.fail(f"应为键值表,实际是 {kind_name(self.value)}")
        return self.value

    def keys(self, allowed: tuple[str, ...]) -> None:
        for key in self.mapping():
            if key not in allowed:
                raise ConfigError(
                    self._child_path(str(key)), f'未知的键 "{key}",可用的键:{", ".join(allowed)}'
                )

    def get(self, key: str, required: bool = True, default: Any = None) -> Node:
        m = self.mapping()
        if key not in m or m[key] is None:
            if required:
                raise ConfigError(self._child_path(key), "缺少此项")
            return Node(default, self._child_path(key))
        return Node(m[key], self._child_path(key))

    def items(self) -> Iterator[tuple[str, Node]]:
        for key, value in self.mapping().items():
            yield str(key), Node(value, self._child_path(str(key)))

    def seq(self) -> list[Node]:
        if not isinstance(self.value, list):
            raise self.fail(f"应为列表,实际是 {kind_name(self.value)}")
        return [Node(v, self._child_path(i)) for i, v in enumerate(self.value)]

    def text(self) -> str:
        if isinstance(self.value, bool) or not isinstance(self.value, str | int | float):
            raise self.fail(f"应为文字,实际是 {kind_name(self.value)}")
        return str(self.value).strip()

    def code(self) -> str:
        text = self.text()
        if not CODE_RE.match(text) and not text.isdigit():
            raise self.fail(f'代码 "{text}" 只能由英文字母、数字和下划线组成')
        return text

    def integer(self) -> int:
        if isinstance(self.value, bool) or not isinstance(self.value, int):
            raise self.fail(f"应为整数,实际是 {self.value!r}")
        return self.value

    def number(self) -> float:
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise self.fail(f"应为数字,实际是 {self.value!r}")
        return float(self.value)

    def boolean(self) -> bool:
        if not isinstance(self.value, bool):
            raise self.fail(f"应为 true 或 false,实际是 {self.value!r}")
        return self.value

    def strings(self) -> tuple[str, ...]:
        if isinstance(self.value, str):
            return tuple(s for s in re.split(r"[,,、;;\s]+", self.value) if s)
        return tuple(n.text() for n in self.seq())

    def date(self) -> dt.date:
        v = self.value
        if isinstance(v, dt.datetime):
            return v.date()
        if isinstance(v, dt.date):
            return v
        try:
            return dt.date.fromisoformat(str(v))
        except ValueError:
            raise self.fail(f'日期 "{v}" 应写成 2016-12-23 的格式') from None

    def datetime(self) -> dt.datetime:
        v = self.value
        if isinstance(v, dt.datetime):
            return v
        if isinstance(v, dt.date):
            return dt.datetime.combine(v, dt.time(23, 59, 59))
        try:
            return dt.datetime.fromisoformat(str(v))
        except ValueError:
            raise self.fail(f'时间 "{v}" 应写成 2017-02-05T23:59:59 的格式') from None


def kind_name(value: Any) -> str:
    return {dict: "键值表", list: "列表", str: "文字", int: "整数", float: "数字", bool: "布尔值"}.get(
        type(value), "空值" if value is None else type(value).__name__
    )


def optional_text(node: Node, key: str) -> str:
    value = node.get(key, required=False)
    return value.text() if value.value is not None else ""


def choice(node: Node, choices: tuple[str, ...], what: str) -> str:
    text = node.text()
    if text not in choices:
        raise node.fail(f'未知{what} "{text}",可选:{", ".join(choices)}')
    return text


def unique(nodes: list[Node], codes: list[str], what: str) -> None:
    seen: dict[str, int] = {}
    for i, c in enumerate(codes):
        if c in seen:
            raise ConfigError(nodes[i].path, f'{what} "{c}" 重复,与第 {seen[c] + 1} 项相同')
        seen[c] = i
