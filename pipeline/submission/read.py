"""Intake of `pipeline check`: one file's bytes become the raw values of one form's cells, with its form
and unit, found by the template's hidden `_meta` map or by the labels; normalize/validate come after.
"""

from __future__ import annotations

import codecs
import functools
import html
import io
import itertools
import logging
import math
import pickle
import re
import unicodedata
import xml.etree.ElementTree as ET
import zipfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import python_calamine as calamine

from pipeline.campaign.config import Field, Form, Limits, Row, Rules, Section
from pipeline.model import (
    F_ENCRYPTED,
    F_IDENTITY,
    F_LINK,
    F_MACRO,
    F_STRUCTURE,
    F_TOO_LARGE,
    F_UNREADABLE,
    F_UNRECOGNISED,
    Cell,
    Finding,
    Read,
    Severity,
)

log = logging.getLogger(__name__)

Key = tuple[str, str, str]  # (section, row, field), as layout.Slot.key
Pos = tuple[int, int]  # 0-based (row, column) on a sheet

FEEDBACK_SHEET = "校验结果"  # our own annotation sheet, in a corrected copy a unit sends back
META_SHEET = "_meta"  # the contract written by template.py
META_HEADER = ("sheet", "cell", "section", "row", "field")

# The limits themselves are set in rules.yaml (`limits:`, config.Limits); these are its defaults, for code
# that has no rules at hand.
DEFAULT_LIMITS = Limits()
MAX_BYTES = DEFAULT_LIMITS.max_bytes
MAX_UNZIPPED = DEFAULT_LIMITS.max_unzipped
MAX_RATIO = DEFAULT_LIMITS.max_ratio
# A small archive cannot hurt whatever its ratio; below this the ratio is not held against it.
RATIO_FLOOR = 1024 * 1024

TITLE_ROWS = 8  # the title is in row 2 of a template; people insert a few rows above it
HEADER_ROWS = 10  # where the 填报单位 line may be found

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".et", ".ett", ".xlt", ".xltx", ".csv")

MSG_EMPTY = "文件是空的(0 字节),可能没有保存好或没有传完整;请重新保存后报送"
MSG_DAMAGED = "文件已损坏或不完整(可能没有下载或复制完),无法打开;请确认在电脑上能正常打开后重新报送"
MSG_ENCRYPTED = "文件设置了打开密码,请取消密码后重新报送"
MSG_MACRO = (
    "文件中含有宏(VBA 程序);本系统从不运行宏,已直接读取表格中保存的数值。"
    "如表中数字要靠宏计算,请在 Excel 中确认结果后另存为 .xlsx 文件再报送"
)
MSG_LINK = (
    "文件中有公式引用了其他文件(外部链接);本系统不会打开或更新这些链接,已按表格中保存的数值读取。"
    "请确认这些数值是最新的,最好把公式改为数值后再报送"
)


class Packed(Mapping[Key, Cell]):
    """A form's cells as they travel from the child that read them: pickled there as one string, unpacked
    here only when a finding needs a cell's place or text. Most forms have none, and unpickling a hundred
    cells each was the parent's largest share of the reading (6,000 forms at national scale)."""

    def __init__(self, cells: Mapping[Key, Cell], packed: bytes | None = None):
        self._cells = cells
        self._packed = packed

    def __reduce__(self) -> tuple[Any, ...]:
        packed = self._packed if self._packed is not None else pickle.dumps(dict(self._cells), protocol=5)
        return Packed, ({}, packed)

    def _unpacked(self) -> Mapping[Key, Cell]:
        if self._packed is not None:
            self._cells, self._packed = pickle.loads(self._packed), None
        return self._cells

    def __getitem__(self, key: Key) -> Cell:
        return self._unpacked()[key]

    def __iter__(self) -> Iterator[Key]:
        return iter(self._unpacked())

    def __len__(self) -> int:
        return len(self._unpacked())


def read_path(path: Path, rules: Rules, name: str | None = None) -> Read:
    """Read the file at `path`; `name` is its name as messages show it (default: the path's own)."""
    name = path.name if name is None else name
    limit = rules.limits.max_bytes
    try:
        with path.open("rb") as fh:
            data = fh.read(limit + 1)  # a huge file is refused without holding all of it
            if len(data) > limit:
                return _refused(name, _too_large(path.stat().st_size, rules.limits))
    except OSError as exc:
        # A file still being copied or removed meanwhile: a verdict for it, and the batch goes on.
        log.info("cannot open %s: %r", path, exc)
        return _refused(name, Finding(F_UNREADABLE, Severity.ERROR, "文件无法打开(可能已被移走、没有权限或仍在复制中)"))
    return read_submission(data, name, rules)


def read_submission(data: bytes, name: str, rules: Rules) -> Read:
    """Read one file; every problem becomes a finding, never an exception."""
    try:
        return _Reader(data, name, rules).run()
    except _Refusal as r:
        return _refused(name, r.finding)
    except MemoryError:
        raise  # the sandbox (pipeline.sandbox) turns it into F-too-large
    except Exception:
        # A fault of this program must not stop the batch; the log keeps the traceback for staff.
        log.exception("reading %s failed", name)
        return _refused(name, Finding(F_UNREADABLE, Severity.ERROR, "读取本文件时程序出错(已记录,将由省总工作人员处理),暂无法给出结论"))


def _refused(name: str, finding: Finding) -> Read:
    return Read(file=name, form=None, unit=None, cells={}, findings=[finding], readable=False)


class _Refusal(Exception):
    """The file cannot be read at all; carries the one finding that says why."""

    def __init__(self, finding: Finding):
        super().__init__(finding.message)
        self.finding = finding


def _unreadable(message: str) -> _Refusal:
    return _Refusal(Finding(F_UNREADABLE, Severity.ERROR, message))


# --- what the bytes are ----------------------------------------------------------------------------------


def _sniff(data: bytes, name: str, limits: Limits) -> str:
    """The spreadsheet format of `data` by its content ("xlsx", "xlsb", "ods", "xls"); raises _Refusal."""
    if not data:
        raise _unreadable(MSG_EMPTY)
    if len(data) > limits.max_bytes:
        raise _Refusal(_too_large(len(data), limits))
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data, name, limits)
    if data.startswith(b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"):
        return _sniff_ole(data, name)
    raise _unreadable(_not_a_spreadsheet(data, name))


def _too_large(size: int, limits: Limits) -> Finding:
    return Finding(
        F_TOO_LARGE, Severity.ERROR,
        f"文件大小为 {_mb(size)} MB,超过 {limits.max_file_mb:g} MB 的上限,不像是一张统计表;请只报送填好的统计表",
    )


def _mb(size: int) -> str:
    """Megabytes rounded up, so that a file just over the limit does not read as equal to it."""
    return f"{math.ceil(size / 2**20 * 10) / 10:g}"


_OPENED: list[tuple[bytes, zipfile.ZipFile, dict[str, bytes]]] = []  # the package being read (see _package)


def _package(data: bytes) -> zipfile.ZipFile:
    """The zip package of `data`, opened once for the sniffing, the active-content check, the `_meta` head
    and the formula scan of one file (its central directory was a fair share of the reading time)."""
    if _OPENED and _OPENED[0][0] is data:
        return _OPENED[0][1]
    zf = zipfile.ZipFile(io.BytesIO(data))
    _OPENED[:] = [(data, zf, {})]
    return zf


def _part(zf: zipfile.ZipFile, name: str) -> bytes:
    """A small part of the package being read (the workbook and its relationships), unpacked once."""
    if not (_OPENED and _OPENED[0][1] is zf):
        return zf.read(name)
    parts = _OPENED[0][2]
    if name not in parts:
        parts[name] = zf.read(name)
    return parts[name]


def _sniff_zip(data: bytes, name: str, limits: Limits) -> str:
    try:
        zf = _package(data)
        infos = zf.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise _unreadable(MSG_DAMAGED) from None
    total = sum(i.file_size for i in infos)
    packed = sum(i.compress_size for i in infos)
    ratio = total / max(packed, 1)
    if total > limits.max_unzipped:
        raise _Refusal(
            Finding(
                F_TOO_LARGE, Severity.ERROR,
                f"文件解压后有 {_mb(total)} MB,超过 {limits.max_unzipped_mb:g} MB 的上限,远超一张统计表的正常大小;"
                "请只报送填好的统计表",
            )
        )
    if total > RATIO_FLOOR and ratio > limits.max_ratio:
        raise _Refusal(
            Finding(
                F_TOO_LARGE, Severity.ERROR,
                f"文件压缩比高达 {ratio:.0f} 倍(解压后 {_mb(total)} MB),不像是正常的表格文件,为安全起见不予读取;"
                "请在 Excel 或 WPS 中重新保存后报送",
            )
        )
    names = {i.filename for i in infos}
    if "xl/workbook.xml" in names:
        return "xlsx"
    if "xl/workbook.bin" in names:
        return "xlsb"
    mimetype = ""
    if "mimetype" in names and zf.getinfo("mimetype").file_size < 200:
        try:
            mimetype = zf.read("mimetype").decode("ascii", "replace").strip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            raise _unreadable(MSG_DAMAGED) from None
    if mimetype == "application/vnd.oasis.opendocument.spreadsheet":
        return "ods"
    if "word/document.xml" in names or mimetype == "application/vnd.oasis.opendocument.text":
        what = "一个文字处理文档(Word/WPS 文字)"
    elif "ppt/presentation.xml" in names or mimetype == "application/vnd.oasis.opendocument.presentation":
        what = "一个演示文稿(PPT)"
    else:
        what = "一个 zip 压缩包"
    raise _unreadable(_not_a_spreadsheet_message(what, name))


def _sniff_ole(data: bytes, name: str) -> str:
    streams = _ole_stream_names(data)
    if streams & {"EncryptionInfo", "EncryptedPackage"}:
        raise _Refusal(Finding(F_ENCRYPTED, Severity.ERROR, MSG_ENCRYPTED))
    if "WordDocument" in streams:
        raise _unreadable(_not_a_spreadsheet_message("一个 Word 文档(.doc)", name))
    if "PowerPoint Document" in streams:
        raise _unreadable(_not_a_spreadsheet_message("一个演示文稿(.ppt)", name))
    # "Workbook"/"Book" is a real .xls; anything else is left to calamine to accept or refuse.
    return "xls"


def _ole_stream_names(data: bytes) -> set[str]:
    """Names of the entries in an OLE2 compound file's directory; empty if it cannot be walked.

    Enough of [MS-CFB] to tell an .xls from a password-protected .xlsx (which Office wraps in an OLE
    file holding EncryptionInfo and EncryptedPackage) without a third-party parser.
    """
    try:
        shift = int.from_bytes(data[0x1E:0x20], "little")
        if shift not in (9, 12):
            return set()
        size = 1 << shift
        n_fat = int.from_bytes(data[0x2C:0x30], "little")
        dir_start = int.from_bytes(data[0x30:0x34], "little")
        difat_next = int.from_bytes(data[0x44:0x48], "little")
        fat_sectors = [int.from_bytes(data[0x4C + 4 * i : 0x50 + 4 * i], "little") for i in range(109)]
        seen = 0
        while difat_next < 0xFFFFFFFA and seen < 1000:  # more FAT sectors listed in a DIFAT chain
            off = (difat_next + 1) * size
            block = data[off : off + size]
            entries = [int.from_bytes(block[j : j + 4], "little") for j in range(0, size - 4, 4)]
            fat_sectors.extend(entries)
            difat_next = int.from_bytes(block[size - 4 : size], "little")
            seen += 1
        fat: list[int] = []
        for s in fat_sectors[:n_fat]:
            off = (s + 1) * size
            block = data[off : off + size]
            fat.extend(int.from_bytes(block[j : j + 4], "little") for j in range(0, len(block) - 3, 4))
        names: set[str] = set()
        sector, hops = dir_start, 0
        while sector < 0xFFFFFFFA and hops < 100_000:
            off = (sector + 1) * size
            block = data[off : off + size]
            for j in range(0, len(block) - 127, 128):
                entry = block[j : j + 128]
                length = int.from_bytes(entry[64:66], "little")
                if entry[66] in (1, 2, 5) and 2 <= length <= 64:
                    names.add(entry[: length - 2].decode("utf-16-le", "replace"))
            sector = fat[sector] if sector < len(fat) else 0xFFFFFFFE
            hops += 1
        return names
    except (IndexError, ValueError):
        return set()


def _active_content(data: bytes, fmt: str) -> tuple[bool, bool]:
    """(has macros, has links to other files), told from the package's part names alone.

    Neither is ever acted on: calamine runs no VBA and opens no other file, so the values read are those
    the file was saved with. The sender is told, because those values may be stale.
    """
    if fmt == "xls":
        return bool(_ole_stream_names(data) & {"_VBA_PROJECT_CUR", "VBA"}), False
    if fmt not in ("xlsx", "xlsb"):
        return False, False
    try:
        zf = _package(data)
        names = [n.lower() for n in zf.namelist()]
        macros = any(n.rpartition("/")[2] == "vbaproject.bin" for n in names)
        if not macros and "[content_types].xml" in names:
            info = next(i for i in zf.infolist() if i.filename.lower() == "[content_types].xml")
            if info.file_size < 2**20:
                macros = b"macroenabled" in zf.read(info).lower()
    except (zipfile.BadZipFile, OSError, EOFError, ValueError, NotImplementedError, RuntimeError):
        return False, False  # a damaged package is refused by the reader itself
    links = any(n.startswith("xl/externallinks/") and n.endswith((".xml", ".bin")) for n in names)
    return macros, links


_MAGIC: tuple[tuple[bytes, str], ...] = (
    (b"%PDF", "一个 PDF 文件"),
    (b"\xff\xd8\xff", "一张图片(JPEG)"),
    (b"\x89PNG\r\n\x1a\n", "一张图片(PNG)"),
    (b"GIF87a", "一张图片(GIF)"),
    (b"GIF89a", "一张图片(GIF)"),
    (b"II*\x00", "一张图片(TIFF)"),
    (b"MM\x00*", "一张图片(TIFF)"),
    (b"Rar!\x1a\x07", "一个 RAR 压缩包"),
    (b"7z\xbc\xaf\x27\x1c", "一个 7z 压缩包"),
    (b"\x1f\x8b", "一个 gz 压缩包"),
    (b"{\\rtf", "一个 RTF 文档"),
)


def _not_a_spreadsheet(data: bytes, name: str) -> str:
    for magic, what in _MAGIC:
        if data.startswith(magic):
            return _not_a_spreadsheet_message(what, name)
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return _not_a_spreadsheet_message("一张图片(WEBP)", name)
    if data[4:12] in (b"ftypheic", b"ftypheix", b"ftypmif1"):
        return _not_a_spreadsheet_message("一张图片(HEIC,手机拍摄的照片)", name)
    text = _text_head(data)
    if text is not None:
        low = text.lstrip().lower()
        if "urn:schemas-microsoft-com:office:spreadsheet" in low:
            return (
                '这是"XML 电子表格 2003"格式的文件,本系统无法读取;'
                '请用 Excel 或 WPS 打开后"另存为".xlsx 格式再报送'
            )
        if low.startswith(("<html", "<!doctype html", "<table", "<meta")) or "<html" in low[:500]:
            return (
                "这是网页(HTML)格式的文件,不是真正的 Excel 表格(有些系统导出的 .xls 其实是网页);"
                '请用 Excel 或 WPS 打开后"另存为".xlsx 格式再报送'
            )
        first = next((line.strip() for line in text.splitlines() if line.strip()), "")
        snippet = first[:20] + ("…" if len(first) > 20 else "")
        return _not_a_spreadsheet_message(f'一个纯文本文件(开头是"{snippet}")' if snippet else "一个纯文本文件", name)
    if data.startswith(b"BM"):  # two bytes only: trusted once the file has proved not to be text
        return _not_a_spreadsheet_message("一张图片(BMP)", name)
    head = " ".join(f"{b:02X}" for b in data[:4])
    return _not_a_spreadsheet_message(f"无法识别的格式(文件开头为 {head})", name)


def _not_a_spreadsheet_message(what: str, name: str) -> str:
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    ask = "请报送填好的统计表(.xlsx 或 .xls 文件)"
    if suffix in SPREADSHEET_SUFFIXES:
        return f"文件扩展名是 {suffix},但内容实际是{what},不是 Excel 表格;{ask}"
    return f"这是{what},不是 Excel 表格;{ask}"


def _text_head(data: bytes) -> str | None:
    """The start of `data` as text if it reads as text in a common encoding, else None."""
    head = data[:4096]
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encodings: tuple[str, ...] = ("utf-16",)
    elif b"\x00" in head:
        return None
    else:
        encodings = ("utf-8-sig", "gb18030")
    for enc in encodings:
        try:
            # Incremental, so a character cut by the 4096-byte slice is not taken for binary.
            text = codecs.getincrementaldecoder(enc)().decode(head, final=False)
        except UnicodeDecodeError:
            continue
        controls = sum(1 for ch in text if ord(ch) < 32 and ch not in "\r\n\t\f")
        if controls <= len(text) // 100:
            return text
    return None


# --- the campaign's forms and units, prepared once per Rules ------------------------------------------------


@dataclass(frozen=True)
class _Anchor:
    offset: Pos  # from the value cell to the label cell
    texts: frozenset[str]  # accepted label texts, normalised


@dataclass(frozen=True)
class _SlotPlan:
    key: Key
    section: Section
    row: Row | None
    field: Field
    cell: Pos  # the value cell in a fresh template
    anchors: tuple[_Anchor, ...]


@dataclass(frozen=True)
class _FormPlan:
    form: Form
    slots: tuple[_SlotPlan, ...]
    titles: dict[str, str]  # section code -> normalised section title
    labels: frozenset[str]  # every normalised label of the form, to recognise its sheet by content
    title: str  # normalised form title
    keys: frozenset[Key]


@dataclass(frozen=True)
class _Index:
    forms: dict[str, _FormPlan]
    unit_names: dict[str, str]  # unit code -> name
    exact: dict[str, str]  # normalised name or alias -> unit code
    lengths: tuple[int, ...]  # the lengths of those names and aliases, longest first
    noise: tuple[str, ...]  # form titles and sheet names, removed from file names before unit matching


_INDEXES: dict[int, tuple[Rules, _Index]] = {}


def _index(rules: Rules) -> _Index:
    cached = _INDEXES.get(id(rules))
    if cached is not None and cached[0] is rules:
        return cached[1]
    # layout needs openpyxl's column letters; imported here so that merely importing read stays light.
    from pipeline.campaign import layout

    forms: dict[str, _FormPlan] = {}
    for code, form in rules.forms.items():
        lay = layout.compute(form)
        plans = []
        for slot in lay.slots:
            cell = _parse_a1(slot.cell)
            captions = frozenset({_norm(slot.field.caption), _norm(slot.field.label)})
            anchors: tuple[_Anchor, ...]
            if slot.section.footer:
                anchors = (_Anchor(_minus(_parse_a1(slot.row_label_cell), cell), frozenset({_norm(slot.field.label)})),)
            elif slot.row is not None:
                anchors = (
                    _Anchor(_minus(_parse_a1(slot.row_label_cell), cell), frozenset({_norm(slot.row.label)})),
                    _Anchor(_minus(_parse_a1(slot.field_label_cell), cell), captions),
                )
            else:
                anchors = (_Anchor(_minus(_parse_a1(slot.field_label_cell), cell), captions),)
            plans.append(_SlotPlan(slot.key, slot.section, slot.row, slot.field, cell, anchors))
        labels = {t for p in plans for a in p.anchors for t in a.texts}
        titles = {s.code: _norm(s.title) for s in form.sections if not s.footer and s.title}
        labels.update(titles.values())
        forms[code] = _FormPlan(
            form, tuple(plans), titles, frozenset(labels), _norm(form.title), frozenset(p.key for p in plans)
        )
    pairs: dict[str, str] = {}
    for unit in rules.units:
        for alias in (unit.name, *unit.aliases):
            pairs.setdefault(_squash(alias), unit.code)
    noise = sorted(
        {_squash(t) for f in rules.forms.values() for t in (f.title, f.sheet)} | {_squash(rules.campaign.title)},
        key=len, reverse=True,
    )
    index = _Index(
        forms=forms,
        unit_names={u.code: u.name for u in rules.units},
        exact=pairs,
        lengths=tuple(sorted({len(alias) for alias in pairs if alias}, reverse=True)),
        noise=tuple(noise),
    )
    _INDEXES.clear()  # one campaign per process in practice; do not keep old Rules alive
    _INDEXES[id(rules)] = (rules, index)
    return index


# --- small helpers -----------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4096)  # labels repeat in every file of a form
def _squash(text: str) -> str:
    """Full-width to half-width, whitespace (newlines, ideographic spaces) removed."""
    return re.sub(r"\s+", "", unicodedata.normalize("NFKC", text))


def _norm(value: object) -> str:
    """A label as compared: squashed, without the trailing colon of 单位负责人:."""
    if not isinstance(value, str):
        return ""
    return _squash(value).rstrip(":")


def _text(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))  # 460100 re-saved as a number comes back as 460100.0
    return str(value).strip()


def _minus(a: Pos, b: Pos) -> Pos:
    return a[0] - b[0], a[1] - b[1]


@functools.lru_cache(maxsize=4096)
def _parse_a1(address: str) -> Pos:
    m = re.fullmatch(r"\$?([A-Za-z]{1,3})\$?(\d+)", address.strip())
    if not m:
        raise ValueError(f"not an A1 address: {address!r}")
    col = 0
    for ch in m.group(1).upper():
        col = col * 26 + ord(ch) - 64
    return int(m.group(2)) - 1, col - 1


@functools.lru_cache(maxsize=4096)
def _a1(pos: Pos) -> str:  # the same few hundred cells in every form
    row, col = pos
    letters = ""
    n = col + 1
    while n:
        n, rem = divmod(n - 1, 26)
        letters = chr(65 + rem) + letters
    return f"{letters}{row + 1}"


Grid = list[list[Any]]


def _at(grid: Grid, pos: Pos) -> Any:
    r, c = pos
    if r < 0 or c < 0 or r >= len(grid) or c >= len(grid[r]):
        return None
    value = grid[r][c]
    return None if value == "" else value  # calamine gives "" for an empty cell


# --- the workbook ----------------------------------------------------------------------------------------


class _Book:
    """calamine's workbook, every call guarded: whatever it raises makes the file unreadable."""

    def __init__(self, data: bytes):
        self._grids: dict[str, Grid] = {}
        wb = _guard(lambda: calamine.CalamineWorkbook.from_filelike(io.BytesIO(data)))
        metas = _guard(lambda: list(wb.sheets_metadata))
        self._wb = wb
        self.names = [m.name for m in metas]
        self.visible = [
            m.name
            for m in metas
            if m.visible == calamine.SheetVisibleEnum.Visible
            and m.typ == calamine.SheetTypeEnum.WorkSheet
            and m.name not in (META_SHEET, FEEDBACK_SHEET)
        ]

    def grid(self, name: str) -> Grid:
        if name not in self._grids:
            self._grids[name] = _guard(
                lambda: self._wb.get_sheet_by_name(name).to_python(skip_empty_area=False)
            )
        return self._grids[name]


def _guard(call: Callable[[], Any]) -> Any:
    try:
        return call()
    except (KeyboardInterrupt, SystemExit):
        raise
    except BaseException as exc:  # calamine raises its own types, and pyo3 panics derive from BaseException
        log.info("calamine could not read the file: %r", exc)
        text = str(exc).lower()
        if isinstance(exc, calamine.PasswordError) or "password" in text or "encrypt" in text:
            raise _Refusal(Finding(F_ENCRYPTED, Severity.ERROR, MSG_ENCRYPTED)) from None
        raise _unreadable(MSG_DAMAGED) from None


@dataclass
class _Meta:
    form: str = ""
    unit: str = ""
    version: str = ""
    rules: str = ""  # the sha256 of the rules.yaml the template was made from
    cells: dict[Key, tuple[str, str]] = field(default_factory=dict)  # key -> (sheet, A1)

    @property
    def template(self) -> tuple[str, str, str]:
        """What one template has in every copy, whoever fills it: the same cell map below."""
        return self.form, self.version, self.rules


_META_ATTRS = {"form": "form", "unit": "unit", "template_version": "version", "rules_sha256": "rules"}


def _read_meta(grid: Grid) -> _Meta:
    meta = _Meta()
    for i, row in enumerate(grid):
        values = [_text(v) for v in row[:5]] + [""] * (5 - len(row[:5]))
        if tuple(v.lower() for v in values) == META_HEADER:
            meta.cells = dict(_meta_map(tuple(tuple(r[:5]) for r in grid[i + 1 :])))
            break
        if values[0] in _META_ATTRS:
            setattr(meta, _META_ATTRS[values[0]], values[1])
    return meta


_MAPS: dict[tuple[str, str, str], dict[Key, tuple[str, str]]] = {}  # _Meta.template -> its cell map


def _meta_of(data: bytes, fmt: str, book: _Book) -> _Meta:
    """The `_meta` sheet of a file. Its 570 cells cost calamine more than the form's own sheet, and all but
    the unit's code are the same in every copy of a template: so the head rows are read from the XML, and
    the map is the one read in full from the first copy of the same template (form, version, rules)."""
    head = _meta_head(data) if fmt == "xlsx" else None
    if head is None or not head.rules:
        return _read_meta(book.grid(META_SHEET))
    known = _MAPS.get(head.template)
    if known is not None:
        head.cells = known
        return head
    meta = _read_meta(book.grid(META_SHEET))
    if (meta.template, meta.unit) == (head.template, head.unit):
        if len(_MAPS) >= 64:
            _MAPS.clear()
        _MAPS[head.template] = meta.cells
    else:  # the quick reading disagrees with calamine's: trust calamine, and never the quick one for it
        log.info("_meta head read from the XML differs from calamine's: %r / %r", head, meta)
    return meta


_ROW = re.compile(rb"<row\b[^>]*>(.*?)</row>", re.S)
_ROW_CELL = re.compile(rb'<c r="([A-E])\d+"([^>]*?)(?:/>|>(.*?)</c>)', re.S)
_TYPE = re.compile(rb'\bt="(\w+)"')
_INLINE_T = re.compile(rb"<t\b[^>]*>([^<]*)</t>")
_SI = re.compile(rb"<si>(.*?)</si>|<si/>", re.S)
_HEAD_BYTES = 1 << 13  # the key rows and the header: 2.5 KB in a template, less with shared strings
_HEAD_ROWS = 8  # the header is row 5 of a template


def _meta_head(data: bytes) -> _Meta | None:
    """The key rows of `_meta` (form, unit, template_version, rules_sha256) up to its map's header row, read
    from the sheet's XML; None whenever the XML is not in the plain shape Excel, WPS, LibreOffice and
    openpyxl write (then calamine reads the sheet)."""
    try:
        zf = _package(data)
        part = _sheet_part(zf, META_SHEET)
        if part is None:
            return None
        with zf.open(part) as fh:
            xml = fh.read(_HEAD_BYTES)
        rows = [row.group(1) for row in itertools.islice(_ROW.finditer(xml), _HEAD_ROWS)]
        shared = any(b't="s"' in row for row in rows)
        strings = _shared_strings(zf, [_row_cells(row) for row in rows]) if shared else []
        meta = _Meta()
        for row in rows:
            values = _row_values(row, strings) if shared else _plain_row_values(row)
            if values is None:
                return None
            if tuple(v.lower() for v in values) == META_HEADER:
                return meta
            if values[0] in _META_ATTRS:
                setattr(meta, _META_ATTRS[values[0]], values[1])
        return None  # no header in the first rows
    except (zipfile.BadZipFile, KeyError, ET.ParseError, OSError, EOFError, ValueError, IndexError,
            UnicodeDecodeError):
        return None


def _row_cells(row: bytes) -> list[tuple[bytes, bytes, bytes | None]]:
    return [(m.group(1), m.group(2), m.group(3)) for m in _ROW_CELL.finditer(row)]


def _row_values(row: bytes, strings: list[bytes]) -> tuple[str, ...] | None:
    """Columns A-E of a `_meta` row as `_text` gives them; None if a cell is not one this reading handles."""
    values = [""] * 5
    for column, attrs, body in _row_cells(row):
        text = _cell_text(attrs, body, strings)
        if text is None:
            return None
        values[column[0] - 65] = text
    return tuple(values)


@functools.lru_cache(maxsize=256)
def _plain_row_values(row: bytes) -> tuple[str, ...] | None:
    """`_row_values` of a row without shared strings: all but the unit's row are the same bytes in every copy
    of a template, so read once."""
    return _row_values(row, [])


def _cell_text(attrs: bytes, body: bytes | None, strings: list[bytes]) -> str | None:
    """A `_meta` cell as `_text` gives calamine's value; None for what this reading does not handle."""
    t = _TYPE.search(attrs)
    kind = t.group(1) if t else b"n"
    if body is None or (kind == b"n" and b"<v" not in body):
        return ""
    if b"<f" in body or b"_x" in body:  # a formula, or an escaped control character
        return None
    if kind == b"inlineStr":
        raw = b"".join(_INLINE_T.findall(body))
    elif kind == b"s":
        v = _V.search(body)
        raw = b"".join(_INLINE_T.findall(strings[int(v.group(1) or b"")])) if v else b""
    elif kind in (b"str", b"n"):
        v = _V.search(body)
        raw = (v.group(1) or b"") if v else b""
        if kind == b"n":
            return _text(float(raw)) if raw else ""
    else:
        return None  # a boolean, an error, a date: not what a template writes here
    return html.unescape(raw.decode("utf-8")).strip()


def _shared_strings(zf: zipfile.ZipFile, rows: list[list[tuple[bytes, bytes, bytes | None]]]) -> list[bytes]:
    """The shared strings up to the last one the head rows use (their <si> bodies); [] when none is used."""
    wanted = [int(v.group(1) or b"") for cells in rows for _, attrs, body in cells
              if body and b't="s"' in attrs and (v := _V.search(body))]
    if not wanted:
        return []
    xml = zf.read(_strings_part(_part(zf, "xl/_rels/workbook.xml.rels")))
    if b"<rPh" in xml:  # phonetic runs: calamine leaves them out, and so would have to this reading
        raise ValueError("phonetic runs in the shared strings")
    out: list[bytes] = []
    for m in _SI.finditer(xml):
        out.append(m.group(1) or b"")
        if len(out) > max(wanted):
            break
    return out


@functools.lru_cache(maxsize=16)
def _strings_part(rels_xml: bytes) -> str:
    for rel in _parsed(rels_xml).iter():
        if _local(rel.tag) == "Relationship" and rel.get("Type", "").endswith("/sharedStrings"):
            target = rel.get("Target", "")
            return target.lstrip("/") if target.startswith("/") else str(PurePosixPath("xl") / target)
    raise KeyError("no shared strings part")


@functools.lru_cache(maxsize=64)
def _meta_map(rows: tuple[tuple[Any, ...], ...]) -> tuple[tuple[Key, tuple[str, str]], ...]:
    """The cell map of a `_meta` sheet: the same for every file of a form, so parsed once."""
    out = []
    for row in rows:
        sheet, address, section, row_code, field_code = [_text(v) for v in row] + [""] * (5 - len(row))
        if sheet and section and field_code and re.fullmatch(r"[A-Za-z]{1,3}\d+", address):
            out.append(((section, row_code, field_code), (sheet, address.upper())))
    return tuple(out)


# --- reading one file --------------------------------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes, name: str, rules: Rules):
        self.data = data
        self.name = name
        self.rules = rules
        self.index = _index(rules)
        self.sub = Read(file=name, form=None, unit=None, cells={}, findings=[])

    def add(self, rule: str, severity: Severity, message: str, **where: str) -> None:
        self.sub.findings.append(Finding(rule, severity, message, **where))

    def run(self) -> Read:
        fmt = _sniff(self.data, self.name, self.rules.limits)
        macros, links = _active_content(self.data, fmt)
        if macros:
            self.add(F_MACRO, Severity.WARNING, MSG_MACRO)
        if links:
            self.add(F_LINK, Severity.WARNING, MSG_LINK)
        book = _Book(self.data)
        meta = _meta_of(self.data, fmt, book) if META_SHEET in book.names else None
        titled = self._titled_sheets(book)

        form_code = self._form(meta, titled, book)
        if form_code is None:
            self.add(F_UNRECOGNISED, Severity.ERROR, self._unrecognised(book))
            self.sub.unit, self.sub.identity_source = self._unit_from_filename(), "filename"
            if self.sub.unit is None:
                self.sub.identity_source = ""
            return self.sub
        self.sub.form = form_code
        plan = self.index.forms[form_code]
        others = sorted({f for _, f in titled if f != form_code})
        if others:
            names = "、".join(f"《{self.rules.forms[f].title}》" for f in [form_code, *others])
            self.add(F_STRUCTURE, Severity.ERROR, f"一个文件中有多张报表({names}),请每张报表单独保存为一个文件后分别报送")

        place = _placement(plan, meta.cells if meta is not None and meta.form == form_code else None)
        sheet = self._sheet(book, plan, place.sheet, titled)

        self._identify_unit(meta, book.grid(sheet) if sheet else None)
        if sheet is None:
            return self.sub

        grid = book.grid(sheet)
        found = self._locate(plan, grid, sheet, place)
        formulas = _formula_cells(self.data, sheet) if fmt == "xlsx" else {}
        self.sub.cells = cells = {}
        for key, pos in found.items():
            address = _a1(pos)
            found_formula = formulas.get(address)
            cells[key] = Cell(
                sheet=sheet, address=address, raw=_at(grid, pos),
                formula_without_value=found_formula is not None and not found_formula.value,
                formula=found_formula.text if found_formula else "",
            )
        return self.sub

    # -- which form ------------------------------------------------------------------------------------

    def _titled_sheets(self, book: _Book) -> list[tuple[str, str]]:
        """(sheet, form) for each visible sheet whose first rows carry one of our form titles."""
        out = []
        for name in book.visible:
            text = "".join(_squash(str(v)) for row in book.grid(name)[:TITLE_ROWS] for v in row if isinstance(v, str))
            for code, plan in self.index.forms.items():
                if plan.title and plan.title in text:
                    out.append((name, code))
                    break
        return out

    def _form(self, meta: _Meta | None, titled: list[tuple[str, str]], book: _Book) -> str | None:
        if meta is not None and meta.form in self.rules.forms:
            return meta.form
        if titled:
            return titled[0][1]
        by_sheet = [c for c, f in self.rules.forms.items() if f.sheet in book.visible]
        if len(by_sheet) == 1:
            return by_sheet[0]
        return self._form_from_filename()

    def _form_from_filename(self) -> str | None:
        stem = _squash(PurePosixPath(self.name.replace("\\", "/")).stem)
        hits = set()
        for code, form in self.rules.forms.items():
            attachment = _squash(form.attachment)
            if (
                _squash(form.title) in stem
                or _squash(form.sheet) in stem
                or (attachment and re.search(re.escape(attachment) + r"(?!\d)", stem))
            ):
                hits.add(code)
        return hits.pop() if len(hits) == 1 else None

    def _unrecognised(self, book: _Book) -> str:
        seen = []
        if book.visible:
            first = book.visible[0]
            texts = [_text(v) for row in book.grid(first)[:TITLE_ROWS] for v in row if _text(v)]
            head = " ".join(texts)
            head = head[:40] + ("…" if len(head) > 40 else "")
            seen.append(f'工作表"{first}"开头是"{head}"' if head else f'工作表"{first}"前几行是空的')
        else:
            seen.append("文件中没有可见的工作表")
        seen.append(f'文件名"{self.name}"中也没有报表名称')
        expected = "、".join(f"{f.attachment}《{f.title}》" for f in self.rules.forms.values())
        return f"无法识别为本次活动的报表:{','.join(seen)};本次活动的报表是 {expected}"

    # -- which sheet -----------------------------------------------------------------------------------

    def _sheet(self, book: _Book, plan: _FormPlan, wanted: str, titled: list[tuple[str, str]]) -> str | None:
        if wanted in book.names:
            return wanted
        candidates = [
            name
            for name in book.visible
            if (name, plan.form.code) in titled or self._looks_like(plan, book.grid(name))
        ]
        if len(candidates) == 1:
            self.add(
                F_STRUCTURE, Severity.WARNING, f'工作表名称已由"{wanted}"改为"{candidates[0]}",已按内容识别',
                sheet=candidates[0],
            )
            return candidates[0]
        if not candidates:
            self.add(F_STRUCTURE, Severity.ERROR, f'找不到工作表"{wanted}",其他工作表中也没有这张表的内容;请使用原模板填报')
        else:
            listed = "、".join(f'"{c}"' for c in candidates)
            self.add(
                F_STRUCTURE, Severity.ERROR,
                f'找不到工作表"{wanted}",而 {listed} {len(candidates)} 个工作表都像是这张表,无法确定使用哪一个;'
                "请只保留一个",
            )
        return None

    @staticmethod
    def _looks_like(plan: _FormPlan, grid: Grid) -> bool:
        texts = {_norm(v) for row in grid for v in row if isinstance(v, str)}
        return len(plan.labels & texts) * 2 >= len(plan.labels)

    # -- which unit ------------------------------------------------------------------------------------

    def _identify_unit(self, meta: _Meta | None, grid: Grid | None) -> None:
        typed = _unit_cell_text(grid) if grid is not None else ""
        from_cell = self._match_unit(typed) if typed else None
        from_file = self._unit_from_filename()
        names = self.index.unit_names

        def who(code: str) -> str:
            return f"{names[code]}({code})"

        if meta is not None and meta.unit in names:
            self.sub.unit, self.sub.identity_source = meta.unit, "_meta"
            if from_cell is not None and from_cell != meta.unit:
                also = "" if typed == names[from_cell] else f"(即 {who(from_cell)})"
                self.add(
                    F_IDENTITY, Severity.ERROR,
                    f'隐藏信息显示为 {who(meta.unit)},而填报单位填写的是"{typed}"{also};'
                    "请使用本单位的模板填报",
                )
            elif typed and from_cell is None:
                self.add(
                    F_IDENTITY, Severity.WARNING,
                    f'填报单位填写的是"{typed}",不是本次报送单位的名称;已按隐藏信息 {who(meta.unit)} 处理',
                )
        elif from_cell is not None:
            self.sub.unit, self.sub.identity_source = from_cell, "title"
        elif from_file is not None:
            self.sub.unit, self.sub.identity_source = from_file, "filename"
        else:
            where = f'填报单位填写的是"{typed}"' if typed else "表中没有填写填报单位"
            self.add(
                F_IDENTITY, Severity.ERROR,
                f'无法确定填报单位:{where},文件名"{self.name}"中也没有可识别的单位名称;请在"填报单位"一栏填写单位全称',
            )
            return
        unit = self.sub.unit
        if from_file is not None and unit is not None and from_file != unit:
            # File names are weak evidence (renamed copies, forwarded files): say so, do not reject.
            self.add(
                F_IDENTITY, Severity.WARNING,
                f'文件名"{self.name}"像是 {who(from_file)} 的,而表中的单位是 {who(unit)};已按表中的单位处理',
            )

    def _match_unit(self, text: str) -> str | None:
        key = _squash(text)
        if key in self.index.exact:
            return self.index.exact[key]
        return _longest_alias(key, self.index)

    def _unit_from_filename(self) -> str | None:
        stem = _squash(PurePosixPath(self.name.replace("\\", "/")).stem)
        for noise in self.index.noise:  # 帮扶中心统计表 must not read as the unit 帮扶中心
            stem = stem.replace(noise, "|")
        return _longest_alias(stem, self.index)

    # -- where each value is ---------------------------------------------------------------------------

    def _locate(self, plan: _FormPlan, grid: Grid, sheet: str, place: _Placement) -> dict[Key, Pos]:
        texts: dict[Pos, str] = {}

        def text_at(pos: Pos) -> str:
            if pos not in texts:
                texts[pos] = _norm(_at(grid, pos))
            return texts[pos]

        expected, labels = place.expected, place.labels
        settled = {code for code, wanted in labels.items() if all(text_at(at) in texts for at, texts in wanted)}
        if len(settled) == len(labels):
            return expected  # shared by the copies of a template: not to be changed

        searched, problems = _search(plan, grid, [s for s in plan.form.sections if s.code not in settled])
        found = {k: v for k, v in expected.items() if k[0] in settled}
        found.update(searched)
        for problem in problems:
            self.add(F_STRUCTURE, Severity.ERROR, f'工作表"{sheet}"{problem.message}', sheet=sheet, row=problem.row,
                     field=problem.field)
        moved = _describe_moves(plan, found, expected)
        if moved:
            self.add(F_STRUCTURE, Severity.WARNING, f"表格位置与模板不同({moved}),已按标签识别", sheet=sheet)
        return found


@dataclass(frozen=True)
class _Placement:
    """Where a form's cells and their labels should be, by the `_meta` map or else the rules' layout."""

    sheet: str
    expected: dict[Key, Pos]
    # Per section, each label cell with the texts it may hold: slots of a row or a column share their labels,
    # so each is looked at once per section.
    labels: dict[str, tuple[tuple[Pos, frozenset[str]], ...]]


_PLACEMENTS: dict[tuple[int, int], tuple[_FormPlan, object, _Placement]] = {}


def _placement(plan: _FormPlan, cells: dict[Key, tuple[str, str]] | None) -> _Placement:
    """The placement of `plan` by the map `cells` (None: the layout's): the copies of one template share their
    map (see `_meta_of`), and so this, computed once for all of them."""
    key = (id(plan), id(cells))
    known = _PLACEMENTS.get(key)
    if known is not None and known[0] is plan and known[1] is cells:
        return known[2]
    mapped = {k: v for k, v in cells.items() if k in plan.keys} if cells else {}
    sheet = Counter(s for s, _ in mapped.values()).most_common(1)[0][0] if mapped else plan.form.sheet
    expected = {p.key: _parse_a1(mapped[p.key][1]) if p.key in mapped else p.cell for p in plan.slots}
    labels: dict[str, dict[tuple[Pos, frozenset[str]], None]] = {}
    for p in plan.slots:
        pos = expected[p.key]
        wanted = labels.setdefault(p.section.code, {})
        for a in p.anchors:
            wanted[(pos[0] + a.offset[0], pos[1] + a.offset[1]), a.texts] = None
    place = _Placement(sheet, expected, {code: tuple(wanted) for code, wanted in labels.items()})
    if len(_PLACEMENTS) >= 64:
        _PLACEMENTS.clear()
    _PLACEMENTS[key] = (plan, cells, place)
    return place


def _unit_cell_text(grid: Grid) -> str:
    """What was typed as 填报单位: the rest of the cell after the label, else the next text to its right."""
    for row in grid[:HEADER_ROWS]:
        for j, value in enumerate(row):
            text = _squash(value) if isinstance(value, str) else ""
            if not text.startswith("填报单位"):
                continue
            rest = _strip_unit(text[len("填报单位") :])
            if rest:
                return rest
            for right in row[j + 1 :]:
                candidate = _strip_unit(_text(right))
                if "代码" in candidate:
                    break
                if candidate:
                    return candidate
            return ""
    return ""


def _strip_unit(text: str) -> str:
    return re.sub(r"[【】\[\]::\s]", "", unicodedata.normalize("NFKC", text))


def _longest_alias(text: str, index: _Index) -> str | None:
    """The unit whose longest name or alias occurs in `text`; None when none does or two tie.

    Looks up each piece of `text` of each alias length, so the cost follows the text, not the number of
    units (a national campaign has thousands, and every file name is matched).
    """
    for size in index.lengths:
        if size > len(text):
            continue
        found = {index.exact[piece] for i in range(len(text) - size + 1) if (piece := text[i : i + size]) in index.exact}
        if found:
            return found.pop() if len(found) == 1 else None
    return None


@dataclass(frozen=True)
class _Problem:
    message: str
    row: str = ""
    field: str = ""


def _search(plan: _FormPlan, grid: Grid, sections: list[Section]) -> tuple[dict[Key, Pos], list[_Problem]]:
    """Find each value by its labels: a row label and a column caption, a caption, or a footer label."""
    where: dict[str, list[Pos]] = {}
    for r, line in enumerate(grid):
        for c, value in enumerate(line):
            text = _norm(value)
            if text:
                where.setdefault(text, []).append((r, c))

    # Each section is looked for below its own title and above the next one, so that a label two
    # sections share (合计) is not taken from the wrong table.
    title_rows = []
    for code, title in plan.titles.items():
        places = where.get(title, [])
        if len(places) == 1:
            title_rows.append((places[0][0], code))
    title_rows.sort()
    regions: dict[str, tuple[int, int]] = {}
    for i, (r, code) in enumerate(title_rows):
        end = title_rows[i + 1][0] - 1 if i + 1 < len(title_rows) else len(grid)
        regions[code] = (r + 1, end)

    def hits(texts: Iterable[str], lo: int, hi: int) -> list[Pos]:
        return sorted({p for t in texts for p in where.get(t, []) if lo <= p[0] <= hi})

    found: dict[Key, Pos] = {}
    problems: list[_Problem] = []
    slots = {p.key: p for p in plan.slots}

    def one(texts: Iterable[str], lo: int, hi: int, name: str, shown: str, what: str, **who: str) -> Pos | None:
        got = hits(texts, lo, hi)
        if len(got) == 1:
            return got[0]
        if got:
            cells = "、".join(_a1(p) for p in got)
            problems.append(_Problem(f'中{name}的"{shown}"出现了 {len(got)} 次({cells}),无法确定{what}的位置', **who))
        else:
            problems.append(
                _Problem(f'中找不到{name}的"{shown}",无法确定{what}的位置;请按原模板填报,不要增删行列', **who)
            )
        return None

    for section in sections:
        lo, hi = regions.get(section.code, (0, len(grid)))
        name = section.title or "填报信息"
        before, tried = len(problems), len(section.fields) + len(section.rows)
        if section.tabular:
            rows: dict[str, Pos | None] = {}
            for row in section.rows:
                rows[row.code] = one({_norm(row.label)}, lo, hi, name, row.label, "这一行数据", row=row.code)
            top = min((p[0] for p in rows.values() if p is not None), default=hi + 1)
            for f in section.fields:
                texts = slots[(section.code, section.rows[0].code, f.code)].anchors[1].texts
                cap = one(texts, lo, top - 1, name, f.caption, "这一栏数据", field=f.code)
                if cap is None:
                    continue
                for row in section.rows:
                    at = rows[row.code]
                    if at is not None:
                        found[(section.code, row.code, f.code)] = (at[0], cap[1])
        else:
            for f in section.fields:
                p = slots[(section.code, "", f.code)]
                shown = f"{f.label}:" if section.footer else f.caption
                label = one(p.anchors[0].texts, lo, hi, name, shown, "这一项", field=f.code)
                if label is not None:
                    found[p.key] = _minus(label, p.anchors[0].offset)
        if len(problems) - before == tried:  # nothing of it is there: one message, not one per label
            del problems[before:]
            problems.append(_Problem(f"中找不到{name}(标题、栏目都不在),无法读取这一部分;请使用原模板填报"))
    return found, problems


def _describe_moves(plan: _FormPlan, found: dict[Key, Pos], expected: dict[Key, Pos]) -> str:
    """What moved, in words: one shift for the whole sheet, else each section that moved."""
    deltas = {k: _minus(found[k], expected[k]) for k in found}
    if not any(deltas.values()):
        return ""
    if len(set(deltas.values())) == 1:
        dr, dc = next(iter(deltas.values()))
        parts = []
        if dr:
            parts.append(f"在上方插入了 {dr} 行" if dr > 0 else f"在上方删除了 {-dr} 行")
        if dc:
            parts.append(f"在左侧插入了 {dc} 列" if dc > 0 else f"在左侧删除了 {-dc} 列")
        return "、".join(parts)
    parts = []
    for section in plan.form.sections:
        moves = {d for k, d in deltas.items() if k[0] == section.code}
        if not moves or moves == {(0, 0)}:
            continue
        name = section.title or "填报信息"
        if len(moves) == 1:
            parts.append(name + _shift_words(next(iter(moves))))
        else:
            what = "列" if all(dr == 0 for dr, _ in moves) else "行" if all(dc == 0 for _, dc in moves) else "行和列"
            parts.append(f"{name}中有{what}被插入或删除")
    return ";".join(parts)


def _shift_words(delta: Pos) -> str:
    dr, dc = delta
    words = []
    if dr:
        words.append(f"下移 {dr} 行" if dr > 0 else f"上移 {-dr} 行")
    if dc:
        words.append(f"右移 {dc} 列" if dc > 0 else f"左移 {-dc} 列")
    return "、".join(words)


# --- formulas without results (xlsx/xlsm) ------------------------------------------------------------------

_REL_ID = "{http://schemas.openxmlformats.org/officeDocument/2006/relationships}id"


_CELL = re.compile(rb"<(?:\w+:)?c\b([^>]*?)(?:/>|>(.*?)</(?:\w+:)?c>)", re.S)
_REF = re.compile(rb'\br="([A-Za-z]{1,3}\d+)"')
_F = re.compile(rb"<(?:\w+:)?f\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?f>)", re.S)
_V = re.compile(rb"<(?:\w+:)?v\b[^>]*?(?:/>|>(.*?)</(?:\w+:)?v>)", re.S)
_CELL_START = re.compile(rb"<(?:\w+:)?c[\s>/]")
_F_START = re.compile(rb"<(?:\w+:)?f\b")
CHUNK = 1 << 18


@dataclass(frozen=True)
class Formula:
    """A formula cell as saved: its text, and its cached result as the XML has it (`t` attribute and the
    escaped text of <v>; value "" when the file was never calculated)."""

    text: str
    type: str
    value: str


_T = re.compile(rb'\bt="([a-z]+)"')


def _formula_cells(data: bytes, sheet: str) -> dict[str, Formula]:
    """A1 -> Formula for the formula cells of one sheet.

    calamine returns a formula's cached value and cannot tell "no value" from "empty"; a file written
    by a script and never opened in a spreadsheet program has formulas and no values, which must be
    reported rather than read as blanks. A large sheet XML is streamed in chunks, never loaded whole;
    regular expressions are used because cells never nest and they are many times faster than a parser.
    """
    out: dict[str, Formula] = {}

    def scan(buf: bytes) -> None:
        # Only the cells that hold a formula: <f> is a cell's first child, so the tag just before it
        # opens the cell (a form has hundreds of cells and a few dozen formulas).
        for f in _F_START.finditer(buf):
            m = _CELL.match(buf, buf.rfind(b"<", 0, f.start()))
            if m is None or not m.group(2) or m.end() < f.end():
                continue
            body = m.group(2)
            formula = _F.search(body)
            ref = _REF.search(m.group(1))
            if formula is None or ref is None:
                continue
            v = _V.search(body)
            t = _T.search(m.group(1))
            out[ref.group(1).decode("ascii").upper()] = Formula(
                text=html.unescape((formula.group(1) or b"").decode("utf-8", "replace")).strip(),
                type=t.group(1).decode("ascii") if t else "",
                value=(v.group(1) or b"").decode("utf-8", "replace") if v else "",
            )

    try:
        zf = _package(data)
        part = _sheet_part(zf, sheet)
        if part is None:
            return {}
        if zf.getinfo(part).file_size <= 4 * CHUNK:
            scan(zf.read(part))
            return out
        with zf.open(part) as fh:
            carry = b""
            while chunk := fh.read(CHUNK):
                buf = carry + chunk
                # Everything before the last opening <c is whole cells; the rest waits for more bytes.
                starts = [m.start() for m in _CELL_START.finditer(buf, max(0, len(buf) - CHUNK))]
                cut = starts[-1] if starts else len(buf)
                scan(buf[:cut])
                carry = buf[cut:]
            scan(carry)
        return out
    except (zipfile.BadZipFile, KeyError, ET.ParseError, OSError, EOFError, ValueError) as exc:
        # calamine has read the values already; without this scan only the flag is lost.
        log.info("formula scan of %s skipped: %r", sheet, exc)
        return {}


def formula_results(data: bytes, sheets: Iterable[str]) -> dict[str, dict[str, Formula]]:
    """Sheet -> A1 -> Formula, for the sheets of an .xlsx that have formulas (annotate.py writes the
    cached results back into the copy it makes, which openpyxl would save without them)."""
    out = {}
    for sheet in sheets:
        found = _formula_cells(data, sheet)
        if found:
            out[sheet] = found
    return out


def _sheet_part(zf: zipfile.ZipFile, sheet: str) -> str | None:
    return _sheet_target(_part(zf, "xl/workbook.xml"), _part(zf, "xl/_rels/workbook.xml.rels"), sheet)


@functools.lru_cache(maxsize=16)
def _sheet_target(workbook_xml: bytes, rels_xml: bytes, sheet: str) -> str | None:
    """The part of `sheet`, from the workbook's XML and its relationships: the same bytes in every copy
    of one template saved by one program, so parsed once for all of them."""
    workbook = _parsed(workbook_xml)
    rid = next(
        (
            next((v for k, v in el.attrib.items() if k == _REL_ID or k.endswith("}id")), None)
            for el in workbook.iter()
            if _local(el.tag) == "sheet" and el.get("name") == sheet
        ),
        None,
    )
    if rid is None:
        return None
    rels = _parsed(rels_xml)
    for rel in rels.iter():
        if _local(rel.tag) == "Relationship" and rel.get("Id") == rid:
            target = rel.get("Target", "")
            if target.startswith("/"):
                return target.lstrip("/")
            return str(PurePosixPath("xl") / target)
    return None


def _parsed(xml: bytes) -> ET.Element:
    """A part of the unit's file, parsed: no DTD, so no entity is ever expanded (defusedxml refuses it)."""
    from defusedxml.ElementTree import fromstring

    return fromstring(xml, forbid_dtd=True)


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]
