"""Why a file is not read at all: the exception that carries the one finding, and the wording of every
"too large" refusal (by size, unzipped size, compression ratio, or the worker's memory and time limits),
so that the reader, the batch's size check and the workers all say it the same way.
"""

from __future__ import annotations

import math

from pipeline.campaign.config import Limits
from pipeline.model import F_TOO_LARGE, F_UNREADABLE, Finding, Read, Severity


class Refusal(Exception):
    """The file cannot be read at all; carries the one finding that says why."""

    def __init__(self, finding: Finding):
        super().__init__(finding.message)
        self.finding = finding


def unreadable(message: str) -> Refusal:
    return Refusal(Finding(F_UNREADABLE, Severity.ERROR, message))


def refused(name: str, finding: Finding) -> Read:
    """What reading `name` gives when it is refused: no form, no unit, one finding."""
    return Read(file=name, form=None, unit=None, cells={}, findings=[finding], readable=False)


# --- too large ---------------------------------------------------------------------------------------------


def megabytes(size: int) -> str:
    """Megabytes rounded up, so that a file just over the limit does not read as equal to it."""
    return f"{math.ceil(size / 2**20 * 10) / 10:g}"


def too_large(size: int, limits: Limits) -> Finding:
    """The file itself is over `limits.max_file_mb`."""
    return _too_large(
        f"文件大小为 {megabytes(size)} MB,超过 {limits.max_file_mb:g} MB 的上限,不像是一张统计表;请只报送填好的统计表"
    )


def too_large_unzipped(size: int, limits: Limits) -> Finding:
    """The parts of the package add up to more than `limits.max_unzipped_mb` once decompressed."""
    return _too_large(
        f"文件解压后有 {megabytes(size)} MB,超过 {limits.max_unzipped_mb:g} MB 的上限,远超一张统计表的正常大小;"
        "请只报送填好的统计表"
    )


def too_compressed(ratio: float, size: int) -> Finding:
    """The package decompresses `ratio` times (to `size` bytes): the mark of a zip bomb."""
    return _too_large(
        f"文件压缩比高达 {ratio:.0f} 倍(解压后 {megabytes(size)} MB),不像是正常的表格文件,为安全起见不予读取;"
        "请在 Excel 或 WPS 中重新保存后报送"
    )


def over_limits(memory_mb: int, seconds: float) -> Finding:
    """Reading the file took the worker over its memory or time limit."""
    return _too_large(
        f"读取时超出内存或时间限制({memory_mb} MB / {seconds:g} 秒),文件可能被构造来耗尽资源,未予处理;"
        "请在 Excel 或 WPS 中打开确认无误、重新保存后报送"
    )


def _too_large(message: str) -> Finding:
    return Finding(F_TOO_LARGE, Severity.ERROR, message)
