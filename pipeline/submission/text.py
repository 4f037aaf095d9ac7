"""How the text of a cell or a file name is compared while reading: labels, unit names and `_meta` codes
are matched after the same few normalisations, whichever program saved the file.
"""

from __future__ import annotations

import functools
import re
import unicodedata


@functools.lru_cache(maxsize=4096)  # labels repeat in every file of a form
def squash(text: str) -> str:
    """Full-width to half-width, whitespace (newlines, ideographic spaces) removed."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def label(value: object) -> str:
    """A label as compared: squashed, without the trailing colon of 单位负责人:; "" for a non-text cell."""
    if not isinstance(value, str):
        return ""
    return squash(value).rstrip(":")


def as_text(value: object) -> str:
    """A cell's value as the text a person sees; a code resaved as a number reads as the code."""
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 460100 re-saved as a number comes back as 460100.0
    return str(value).strip()
