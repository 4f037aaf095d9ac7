"""rules.yaml as YAML: parsed with the limits a file staff edit by hand needs, before the loader reads it.

A key written twice would silently take the last value (a second `deadline:` moves the deadline); a file of
megabytes or nested hundreds deep is no campaign. Each is refused with a plain message and, where it has one,
the YAML path of the mistake.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import yaml

MAX_BYTES = 2 * 2**20  # the shipped rules.yaml is 20 KB; a units list belongs in units_file
MAX_DEPTH = 32  # the shipped file nests 7 deep

# libyaml's loader when PyYAML has it (its wheels do): several times faster than PyYAML's own, paid by every
# run, check and worker.
_LOADER: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

_HINTS = {
    "'\\t'": "这里有制表符(Tab),YAML 只能用空格缩进",
    "mapping values are not allowed": "冒号位置不对,或者文字里的冒号需要加引号",
    "could not find expected ':'": "缺少冒号",
    "found duplicate anchor": "锚点(&名称)重复",
    "found undefined alias": "引用了未定义的锚点(*名称)",
    "did not find expected key": "缩进不一致",
    "while scanning a quoted scalar": "引号没有配对",
    "maximum nesting depth": f"嵌套层数过多(超过 {MAX_DEPTH} 层)",
}


class YamlError(Exception):
    """Refused: `path` is the YAML path of the mistake ("" for the whole file), `message` says what."""

    def __init__(self, path: str, message: str):
        super().__init__(message)
        self.path = path
        self.message = message


def parse(data: bytes, name: str) -> Any:
    """The data of a rules.yaml, or YamlError."""
    if len(data) > MAX_BYTES:
        raise YamlError(
            "",
            f"{name} 有 {len(data) / 2**20:.1f} MB,超过 {MAX_BYTES // 2**20} MB 的上限,不像是活动配置;"
            "单位名单请放在 units_file 指定的表格里",
        )
    try:
        _depth_within_limit(data, name)
        loader = _LOADER(data)
        try:
            node = loader.get_single_node()
            if node is None:
                return None
            _no_duplicate_keys(node)
            return loader.construct_document(node)
        finally:
            loader.dispose()
    except yaml.YAMLError as exc:
        raise _worded(_pyyamls(exc, data), name) from None
    except RecursionError:
        raise YamlError("", f"{name} 嵌套层数过多,无法读取;请检查缩进和括号") from None


def _pyyamls(exc: yaml.YAMLError, data: bytes) -> yaml.YAMLError:
    """The same mistake as PyYAML's own parser words it (the hints know its words; libyaml words some
    differently). Not for nesting too deep, which PyYAML's parser would only follow by recursing."""
    if _LOADER is yaml.SafeLoader or "nesting depth" in str(exc):
        return exc
    try:
        yaml.safe_load(data)
    except yaml.YAMLError as theirs:
        return theirs
    except RecursionError:
        pass
    return exc


def _worded(exc: yaml.YAMLError, name: str) -> YamlError:
    mark = getattr(exc, "problem_mark", None)
    where = f"第 {mark.line + 1} 行第 {mark.column + 1} 列" if mark else ""
    problem = str(getattr(exc, "problem", "") or exc)
    hint = next((h for k, h in _HINTS.items() if k in problem), "请检查缩进、冒号和引号")
    return YamlError("", f"{name} {where}写法有误:{hint}(原始信息:{problem})")


_OPEN = (
    yaml.BlockMappingStartToken,
    yaml.BlockSequenceStartToken,
    yaml.FlowMappingStartToken,
    yaml.FlowSequenceStartToken,
)
_CLOSE = (yaml.BlockEndToken, yaml.FlowMappingEndToken, yaml.FlowSequenceEndToken)


def _depth_within_limit(data: bytes, name: str) -> None:
    """Nesting counted from the tokens (libyaml's scanner, no recursion), before anything is built."""
    loader = _LOADER(data)
    try:
        depth, keys = 0, [""]
        expecting_key = False
        while (token := loader.get_token()) is not None and not isinstance(token, yaml.StreamEndToken):
            if isinstance(token, _OPEN):
                depth += 1
                keys.append("")
                if depth > MAX_DEPTH:
                    path = ".".join(k for k in keys if k)
                    raise YamlError(
                        path,
                        f"{name} 第 {token.start_mark.line + 1} 行:嵌套超过 {MAX_DEPTH} 层,"
                        "不像是活动配置;请检查缩进和括号",
                    )
            elif isinstance(token, _CLOSE):
                depth -= 1
                keys.pop()
            elif isinstance(token, yaml.KeyToken):
                expecting_key = True
            elif isinstance(token, yaml.ScalarToken) and expecting_key:
                keys[-1] = str(token.value)
                expecting_key = False
    finally:
        loader.dispose()


def _no_duplicate_keys(root: yaml.Node) -> None:
    """Every mapping's keys written once; else the YAML path of the second one."""
    for path, node in _mappings(root):
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            if not isinstance(key_node, yaml.ScalarNode) or key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = key_node.value
            line = key_node.start_mark.line + 1
            if key in seen:
                where = f"{path}.{key}" if path else str(key)
                raise YamlError(where, f'键 "{key}" 写了两次(第 {seen[key]} 行和第 {line} 行),只能保留一个')
            seen[key] = line


def _mappings(root: yaml.Node) -> Iterator[tuple[str, yaml.MappingNode]]:
    """Each mapping of the document with its YAML path, without recursion; an anchored node once."""
    stack: list[tuple[str, yaml.Node]] = [("", root)]
    visited: set[int] = set()
    while stack:
        path, node = stack.pop()
        if id(node) in visited:
            continue
        visited.add(id(node))
        if isinstance(node, yaml.MappingNode):
            yield path, node
            for key_node, value in node.value:
                key = key_node.value if isinstance(key_node, yaml.ScalarNode) else "?"
                stack.append((f"{path}.{key}" if path else str(key), value))
        elif isinstance(node, yaml.SequenceNode):
            stack.extend((f"{path}[{i}]", value) for i, value in enumerate(node.value))
