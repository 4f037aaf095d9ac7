"""The one Jinja environment of the render package: the HTML report, the summary draft and the e-mails are
all rendered from `templates/` through it.

A variable a template uses and the caller forgot fails (StrictUndefined) instead of printing an empty
cell; output meant for a browser (.html, .htm, .svg, .xml, before .j2) is escaped, text and Markdown are not.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import jinja2

TEMPLATES = Path(__file__).resolve().parents[2] / "templates"
ESCAPED = (".html", ".htm", ".svg", ".xml")


def escaped(name: str | None) -> bool:
    """Whether a template's output is markup, whose variables are escaped."""
    return name is not None and name.removesuffix(".j2").endswith(ESCAPED)


@functools.cache
def environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(TEMPLATES),
        autoescape=escaped,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
    )


def render(template: str, **context: Any) -> str:
    """A template of templates/ rendered; a variable the caller forgot raises jinja2.UndefinedError."""
    return environment().get_template(template).render(**context)
