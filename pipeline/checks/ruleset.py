"""A campaign's rules as objects of their kinds, compiled once per loaded campaign, and the loader of
rules.yaml in full (campaign and rules) that every entry point calls.

`prepare` is the per-file step of checking: a read submission's cells normalised into values, and what
normalisation noticed worded by the rules of those kinds. It runs where the file was read.
"""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.campaign import config
from pipeline.campaign.config import ConfigError, Node, Rule, Rules
from pipeline.checks import messages
from pipeline.checks.expressions import CheckRule
from pipeline.checks.kinds import (
    DEFAULTS,
    CellRule,
    DecimalsRule,
    MoneyUnitRule,
    RequiredRule,
    RowTotalRule,
    TypeRule,
)
from pipeline.model import Checked, Finding, Read
from pipeline.submission import normalize

Kind = TypeRule | DecimalsRule | RequiredRule | RowTotalRule | CheckRule | MoneyUnitRule
KINDS: Mapping[str, Any] = {
    k.kind: k for k in (TypeRule, DecimalsRule, RequiredRule, RowTotalRule, CheckRule, MoneyUnitRule)
}


@dataclass(frozen=True, eq=False)
class Ruleset:
    """The rules of one loaded campaign, in the order of rules.yaml."""

    rules: tuple[Kind, ...]

    @staticmethod
    def of(campaign: Rules) -> Ruleset:
        """The campaign's rules compiled, once per loaded campaign; ConfigError names the YAML path of a bad one."""
        return _compiled(campaign)

    def for_form(self, form: str) -> tuple[Kind, ...]:
        """The rules checked on each submission of `form` alone: those of every form and of that form."""
        found = self._by_form.get(form)
        if found is None:
            found = self._by_form[form] = tuple(r for r in self.rules if r.rule.forms in ((), (form,)))
        return found

    @functools.cached_property
    def _by_form(self) -> dict[str, tuple[Kind, ...]]:
        return {}

    @property
    def across_forms(self) -> tuple[CheckRule, ...]:
        """The rules over a unit's several forms (X-archive)."""
        return tuple(r for r in self.rules if isinstance(r, CheckRule) and r.cross_form)

    def declared(self, kind: str, form: str) -> Any:
        """The first rule of `kind` that applies to `form`, or None."""
        return next((r for r in self.for_form(form) if r.kind == kind), None)

    def speaking(self, kind: str, form: str) -> CellRule:
        """The rule that words a normalisation issue of `kind`: the declared one, else the shipped wording."""
        return self.declared(kind, form) or DEFAULTS[kind]

    def places(self, form: str) -> int:
        rule = self.speaking("decimals", form)
        return rule.places if isinstance(rule, DecimalsRule) else 2

    def word(self, issues: Iterable[normalize.Issue], form: str) -> list[Finding]:
        return [self.speaking(issue.kind, form).word(issue) for issue in issues]

    @functools.cached_property
    def diagnoses(self) -> dict[str, MoneyUnitRule]:
        """The rules whose finding names the mistake behind others' (money in 元), by id."""
        return {r.rule.id: r for r in self.rules if isinstance(r, MoneyUnitRule)}

    def by_id(self, rule_id: str) -> tuple[Kind, ...]:
        """The rule objects of one id (W-funds is three rules of rules.yaml)."""
        return tuple(r for r in self.rules if r.rule.id == rule_id)

    @functools.cached_property
    def row_by_row(self) -> frozenset[str]:
        """Ids of the rules checked row by row (`each_row`)."""
        return frozenset(r.rule.id for r in self.rules if isinstance(r, CheckRule) and r.each_row)


def _compile(rule: Rule, campaign: Rules) -> Kind:
    node = rule.node if rule.node is not None else Node({}, "")
    cls = KINDS.get(rule.kind)
    if cls is None:
        raise node.get("kind").fail(f'未知规则类型 "{rule.kind}",可选:{", ".join(KINDS)}')
    node.keys((*config.RULE_KEYS, *cls.keys))
    compiled: Kind = cls.parse(rule, node, campaign)
    try:
        wrong = messages.unknown(rule.message, compiled.words)
    except ValueError as exc:
        raise node.get("message").fail(str(exc)) from None
    if wrong:
        names = ", ".join(f"{{{w}}}" for w in sorted(compiled.words))
        raise node.get("message").fail(f"消息中的 {{{wrong[0]}}} 无法填写,此类规则可用:{names}")
    return compiled


@functools.lru_cache(maxsize=8)  # Rules hash by identity: one entry per loaded campaign
def _compiled(campaign: Rules) -> Ruleset:
    return Ruleset(tuple(_compile(rule, campaign) for rule in campaign.rules))


def load(path: str | Path = "rules.yaml") -> Rules:
    """Load rules.yaml completely: the campaign, and its rules compiled, so that a bad rule is refused now
    (ConfigError with its YAML path) rather than when the first file is checked."""
    rules = config.load(path)
    Ruleset.of(rules)
    return rules


def loads(raw: bytes | str, source: Path = Path("rules.yaml")) -> Rules:
    """`load` from the text of a rules.yaml (`source` names it in messages and finds a units file)."""
    rules = config.loads(raw, source=source)
    Ruleset.of(rules)
    return rules


def prepare(sub: Read, rules: Rules, today: dt.date) -> Checked:
    """A read submission with its values normalised and the findings of reading and normalising: what
    validation takes. Per file and pure, so it runs where the file was read (the sandbox's children)."""
    if not normalize.normalisable(sub, rules.forms):
        return Checked(sub, findings=list(sub.findings))
    form = sub.form or ""
    book = Ruleset.of(rules)
    values, issues = normalize.submission(
        sub, rules.forms[form], issue_date=rules.campaign.issue_date, today=today, places=book.places(form)
    )
    return Checked(sub, values=values, findings=[*sub.findings, *book.word(issues, form)], normalised=True)


__all__ = ["ConfigError", "Kind", "Ruleset", "load", "loads", "prepare"]
