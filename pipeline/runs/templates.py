"""`pipeline templates`: each unit's blank templates, written into a folder (the template writer itself
only makes bytes)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from pipeline.campaign.config import Rules
from pipeline.io import atomic
from pipeline.render import template


def write_all(rules: Rules, out: Path, unit_code: str | None = None) -> Iterator[Path]:
    """One template per unit and form it owes (only `unit_code`'s when given), each written whole."""
    out.mkdir(parents=True, exist_ok=True)
    for blank in template.blank_forms(rules, unit_code):
        path = out / blank.name
        atomic.write_bytes(path, blank.data)
        yield path
