"""What the bytes of a file are, by their content and never by the name: a spreadsheet format the reader
goes on with, or a refusal that says in plain words what was sent instead (a photo, a Word file, a zip
bomb, a password-protected workbook). Also whether a workbook carries macros or links to other files.
"""

from __future__ import annotations

import codecs
import io
import logging
import zipfile
from dataclasses import dataclass
from pathlib import PurePosixPath

from pipeline.campaign.config import Limits
from pipeline.model import F_ENCRYPTED, F_LINK, F_MACRO, Finding, Severity
from pipeline.submission.refusal import Refusal, too_compressed, too_large, too_large_unzipped, unreadable

log = logging.getLogger(__name__)

# A small archive cannot hurt whatever its ratio; below this the ratio is not held against it.
RATIO_FLOOR = 1024 * 1024

SPREADSHEET_SUFFIXES = (".xlsx", ".xlsm", ".xls", ".xlsb", ".ods", ".et", ".ett", ".xlt", ".xltx", ".csv")
OLE_MAGIC = b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1"

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


class Package:
    """The zip package of one file, opened once for the sniffing, the active-content check, the `_meta` head
    and the formula scan (its central directory was a fair share of the reading time). Small parts asked
    for more than once (the workbook and its relationships) are unpacked once."""

    def __init__(self, data: bytes):
        self.zip = zipfile.ZipFile(io.BytesIO(data))
        self._parts: dict[str, bytes] = {}

    def part(self, name: str) -> bytes:
        if name not in self._parts:
            self._parts[name] = self.zip.read(name)
        return self._parts[name]


@dataclass(frozen=True)
class Sniffed:
    """A file that is a spreadsheet: its format, its zip package (None for .xls), and its active content.

    Neither macros nor links are ever acted on: calamine runs no VBA and opens no other file, so the values
    read are those the file was saved with. The sender is told, because those values may be stale.
    """

    format: str  # "xlsx", "xlsb", "ods" or "xls"
    package: Package | None
    macros: bool = False
    links: bool = False

    def findings(self) -> list[Finding]:
        return ([Finding(F_MACRO, Severity.WARNING, MSG_MACRO)] if self.macros else []) + (
            [Finding(F_LINK, Severity.WARNING, MSG_LINK)] if self.links else []
        )


def sniff(data: bytes, name: str, limits: Limits) -> Sniffed:
    """What `data` is; raises Refusal for anything that is not a spreadsheet the reader may open."""
    if not data:
        raise unreadable(MSG_EMPTY)
    if len(data) > limits.max_bytes:
        raise Refusal(too_large(len(data), limits))
    if data.startswith((b"PK\x03\x04", b"PK\x05\x06")):
        return _sniff_zip(data, name, limits)
    if data.startswith(OLE_MAGIC):
        return _sniff_ole(data, name)
    raise unreadable(_not_a_spreadsheet(data, name))


# --- zip packages: .xlsx, .xlsm, .xlsb, .ods, and what only looks like them -----------------------------


def _sniff_zip(data: bytes, name: str, limits: Limits) -> Sniffed:
    try:
        package = Package(data)
        infos = package.zip.infolist()
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        raise unreadable(MSG_DAMAGED) from None
    total = sum(i.file_size for i in infos)
    ratio = total / max(sum(i.compress_size for i in infos), 1)
    if total > limits.max_unzipped:
        raise Refusal(too_large_unzipped(total, limits))
    if total > RATIO_FLOOR and ratio > limits.max_ratio:
        raise Refusal(too_compressed(ratio, total))
    names = {i.filename for i in infos}
    if "xl/workbook.xml" in names:
        return Sniffed("xlsx", package, *_active_content(package))
    if "xl/workbook.bin" in names:
        return Sniffed("xlsb", package, *_active_content(package))
    mimetype = ""
    if "mimetype" in names and package.zip.getinfo("mimetype").file_size < 200:
        try:
            mimetype = package.zip.read("mimetype").decode("ascii", "replace").strip()
        except (zipfile.BadZipFile, OSError, EOFError, ValueError):
            raise unreadable(MSG_DAMAGED) from None
    if mimetype == "application/vnd.oasis.opendocument.spreadsheet":
        return Sniffed("ods", package)
    if "word/document.xml" in names or mimetype == "application/vnd.oasis.opendocument.text":
        what = "一个文字处理文档(Word/WPS 文字)"
    elif "ppt/presentation.xml" in names or mimetype == "application/vnd.oasis.opendocument.presentation":
        what = "一个演示文稿(PPT)"
    else:
        what = "一个 zip 压缩包"
    raise unreadable(_not_a_spreadsheet_message(what, name))


def _active_content(package: Package) -> tuple[bool, bool]:
    """(has macros, has links to other files) of an .xlsx/.xlsb, told from the package's part names alone."""
    try:
        zf = package.zip
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


# --- OLE2 compound files: .xls, and the Office files that share its container ---------------------------


def _sniff_ole(data: bytes, name: str) -> Sniffed:
    entries = ole_entries(data)
    if entries & {"EncryptionInfo", "EncryptedPackage"}:  # how Office wraps a password-protected .xlsx
        raise Refusal(Finding(F_ENCRYPTED, Severity.ERROR, MSG_ENCRYPTED))
    if "WordDocument" in entries:
        raise unreadable(_not_a_spreadsheet_message("一个 Word 文档(.doc)", name))
    if "PowerPoint Document" in entries:
        raise unreadable(_not_a_spreadsheet_message("一个演示文稿(.ppt)", name))
    # "Workbook"/"Book" is a real .xls; anything else is left to calamine to accept or refuse.
    return Sniffed("xls", None, macros=bool(entries & {"_VBA_PROJECT_CUR", "VBA"}))


def ole_entries(data: bytes) -> set[str]:
    """The names of the storages and streams of an OLE2 compound file, at any depth; empty when olefile
    cannot walk its directory (calamine then decides whether the file is readable)."""
    import olefile  # only .xls and its look-alikes need it

    try:
        with olefile.OleFileIO(
            io.BytesIO(data)
        ) as ole:  # bytes, never a str: olefile would take it for a path
            return {part for path in ole.listdir(streams=True, storages=True) for part in path}
    except MemoryError:
        raise  # the worker's limit: F-too-large
    except Exception as exc:  # olefile raises OSError for what it calls defects, and more on forged files
        log.info("olefile could not walk the compound file: %r", exc)
        return set()


# --- what else people send ---------------------------------------------------------------------------------

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
        return _text_file(text, name)
    if data.startswith(b"BM"):  # two bytes only: trusted once the file has proved not to be text
        return _not_a_spreadsheet_message("一张图片(BMP)", name)
    head = " ".join(f"{b:02X}" for b in data[:4])
    return _not_a_spreadsheet_message(f"无法识别的格式(文件开头为 {head})", name)


def _text_file(text: str, name: str) -> str:
    low = text.lstrip().lower()
    if "urn:schemas-microsoft-com:office:spreadsheet" in low:
        return '这是"XML 电子表格 2003"格式的文件,本系统无法读取;请用 Excel 或 WPS 打开后"另存为".xlsx 格式再报送'
    if low.startswith(("<html", "<!doctype html", "<table", "<meta")) or "<html" in low[:500]:
        return (
            "这是网页(HTML)格式的文件,不是真正的 Excel 表格(有些系统导出的 .xls 其实是网页);"
            '请用 Excel 或 WPS 打开后"另存为".xlsx 格式再报送'
        )
    first = next((line.strip() for line in text.splitlines() if line.strip()), "")
    snippet = first[:20] + ("…" if len(first) > 20 else "")
    return _not_a_spreadsheet_message(
        f'一个纯文本文件(开头是"{snippet}")' if snippet else "一个纯文本文件", name
    )


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
