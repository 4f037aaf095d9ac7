"""Where things go in a level's outbox, and file names made from what units send that are safe there.

Staff open the outbox on Windows: every name made here is one Explorer, Excel and WPS accept.
"""

from __future__ import annotations

import os
import unicodedata
from pathlib import Path

FEEDBACK_DIR = "反馈"  # each unit's annotated copies
MAIL_DIR = "邮件"  # the e-mails, as .eml files people can open
SUMMARY_DIR = "汇总"  # the draft consolidation, and the numbered final editions
STATUS_TXT = "报送情况.txt"
STATUS_JSON = "报送情况.json"
PARTIAL = ".partial-"  # in the name of a hidden folder an edition is written in before it is renamed


def safe_name(name: str, limit: int = 200) -> str:
    """A file name derived from user input that cannot leave its folder or upset a file system.

    Separators, the characters Windows refuses and control characters become _; invisible and
    direction-changing characters are dropped (U+202E would show 表_\u202exslx.exe as 表_exe.xlsx). The name
    is cut to `limit` bytes of UTF-8, keeping its extension: file systems count bytes (255 on Linux), and
    the default leaves room for what callers append (_校验结果.xlsx).
    """
    kept = []
    for ch in name:
        category = unicodedata.category(ch)
        if category != "Cf":  # format characters: bidi overrides, zero-width spaces and joiners, BOM
            kept.append("_" if ch in '\\/:*?"<>|' or category in ("Cc", "Cs", "Zl", "Zp") else ch)
    cleaned = "".join(kept).strip(" .") or "未命名"
    if len(cleaned.encode("utf-8")) > limit:
        suffix = Path(cleaned).suffix
        suffix = suffix if len(suffix.encode("utf-8")) <= 16 else ""
        stem = cleaned[: len(cleaned) - len(suffix)].encode("utf-8")[: limit - len(suffix.encode("utf-8"))]
        cleaned = (stem.decode("utf-8", "ignore").rstrip(" .") or "未命名") + suffix
    return cleaned


def inside(outbox: Path, *parts: str) -> Path:
    """`outbox` joined with `parts`, refused if that would leave the outbox."""
    path = outbox.joinpath(*parts)
    if os.path.commonpath([outbox.resolve(), path.resolve()]) != str(outbox.resolve()):
        raise ValueError(f"路径越出输出目录:{path}")
    return path


def remove_leftovers(outbox: Path) -> list[Path]:
    """What a run killed while writing left behind in the outbox: hidden temporary files of an atomic write
    and hidden folders of an edition not renamed into place. Only called under the run's lock."""
    import shutil

    if not outbox.is_dir():
        return []
    removed = []
    for root, dirs, files in os.walk(outbox):
        for name in dirs:
            if name.startswith(".") and PARTIAL in name:
                shutil.rmtree(os.path.join(root, name), ignore_errors=True)
                removed.append(Path(root, name))
        dirs[:] = [d for d in dirs if not (d.startswith(".") and PARTIAL in d)]
        for name in files:
            if name.startswith(".") and name.endswith(".tmp"):
                os.unlink(os.path.join(root, name))
                removed.append(Path(root, name))
    return removed
