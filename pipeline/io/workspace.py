"""Where a campaign's files live: the campaign folder holding rules.yaml, and under it each level's inbox,
outbox and state, never the folder the command happens to be run from.

The province works in the campaign folder itself (`inbox/`, `outbox/`, `state/`); a unit that consolidates
the units below it (ZX) works in `levels/<code>/`. A level's ledger records whose it is, so one level can
never write into another's.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from pipeline.model import Refused

PROVINCE = "province"
HOME = "PIPELINE_HOME"  # the environment variable naming the campaign folder
RULES = "rules.yaml"


@dataclass(frozen=True)
class Folders:
    """Where a level's files are: what arrives, what goes out, and its ledger."""

    inbox: Path
    outbox: Path
    state: Path


@dataclass(frozen=True)
class Workspace:
    """A campaign folder: its rules.yaml and the folders of each level under it."""

    root: Path
    rules: Path

    def folders(
        self,
        level: str = PROVINCE,
        *,
        inbox: Path | None = None,
        outbox: Path | None = None,
        state: Path | None = None,
    ) -> Folders:
        """The level's folders; any given explicitly (as typed, relative to where the command runs) wins."""
        base = self.root if level == PROVINCE else self.root / "levels" / level
        chosen = Folders(inbox or base / "inbox", outbox or base / "outbox", state or base / "state")
        if level != PROVINCE:
            province = self.folders()
            for mine, theirs, what in (
                (chosen.outbox, province.outbox, "输出目录"),
                (chosen.state, province.state, "台账目录"),
            ):
                if _same(mine, theirs):
                    raise Refused(
                        f"{level} 一级的{what}不能是省总一级的 {theirs};"
                        f"不写 --outbox/--state 时默认用 {base} 下的文件夹"
                    )
        return chosen


def _same(a: Path, b: Path) -> bool:
    return os.path.abspath(a) == os.path.abspath(b)


def find(
    workspace: Path | None = None, rules: Path | None = None, *, project: Path | None = None
) -> Workspace:
    """The campaign folder: --workspace, else $PIPELINE_HOME, else the folder of --rules, else the current
    folder when it holds a rules.yaml, else `project` (the checkout's own demo campaign)."""
    named = workspace or (Path(os.environ[HOME]) if os.environ.get(HOME) else None)
    if named is not None:
        if not named.is_dir():
            raise Refused(f"活动文件夹 {named} 不存在;请检查 --workspace 或环境变量 {HOME}")
        path = rules or named / RULES
        if not path.is_file():
            raise Refused(f"活动文件夹 {named} 中没有 {RULES}")
        return Workspace(named.resolve(), path.resolve())
    if rules is not None:
        return Workspace(rules.resolve().parent, rules.resolve())
    if Path(RULES).is_file():
        return Workspace(Path.cwd(), Path(RULES).resolve())
    if project is not None and (project / RULES).is_file():
        return Workspace(project.resolve(), (project / RULES).resolve())
    raise Refused(f"找不到 {RULES}:请在活动文件夹中运行,或用 --workspace 指明活动文件夹")
