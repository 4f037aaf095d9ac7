"""An e-mail as it arrives in the campaign mailbox, read from its bytes: who sent it, whether it may be
answered at all (RFC 3834), the files it carries and those it carries that cannot be taken.

Real mail is messy: names in RFC 2231 or RFC 2047, or raw GBK bytes where neither was used; charsets
Python does not know; broken MIME; forwards inside forwards. `parse` never raises: whatever it cannot make
sense of becomes a note, and the fetch goes on.
"""

from __future__ import annotations

import datetime as dt
import email
import hashlib
import io
import re
import stat
import zipfile
from dataclasses import dataclass, field
from email.header import decode_header
from email.message import Message
from email.policy import Compat32
from email.utils import collapse_rfc2231_value, getaddresses, parsedate_to_datetime
from pathlib import PurePosixPath

from pipeline.campaign.config import Limits
from pipeline.submission.sniff import SPREADSHEET_SUFFIXES

# What a message is, for the fetch: a unit's submission, or something never answered (RFC 3834).
SUBMISSION, BOUNCE, AUTO, BULK = "submission", "bounce", "auto", "bulk"

MAX_ZIP_FILES = 50  # a unit's zip holds its two forms and a report; a few dozen is already generous
ARCHIVES = {
    ".rar": "RAR",
    ".7z": "7z",
    ".tar": "tar",
    ".gz": "gz",
    ".bz2": "bz2",
    ".xz": "xz",
    ".arj": "ARJ",
    ".cab": "CAB",
}
_MAGIC = ((b"Rar!\x1a\x07", "RAR"), (b"7z\xbc\xaf\x27\x1c", "7z"))
_VACATION = re.compile(
    r"^\s*(自动回复|自動回覆|自动答复|auto(matic)?[ -]?(reply|response)|out of (the )?office|"
    r"休假|外出|vacation|autoreply)",
    re.IGNORECASE,
)
_MESSAGE_ID = re.compile(r"<[^<>\s]+@[^<>\s]+>")


@dataclass(frozen=True)
class Attachment:
    name: str  # as the sender named it, decoded; made safe for the inbox by whoever saves it
    data: bytes


@dataclass(frozen=True)
class Unusable:
    name: str
    reason: str  # what it is and how to send it instead, in Chinese


@dataclass(frozen=True)
class Bounce:
    """A delivery failure report: which message of ours failed (its Message-ID, when the report carries
    it), for whom, and why."""

    original_id: str
    recipients: tuple[str, ...]
    reason: str


@dataclass
class Incoming:
    message_id: str  # its Message-ID, or "<sha256@local>" of its bytes when it has none
    sender: str  # the From address, lower case ("" when there is none)
    sender_name: str
    subject: str
    date: dt.datetime | None  # its Date header, when one parses
    references: tuple[str, ...]  # References then In-Reply-To: the thread it belongs to
    kind: str = SUBMISSION
    why_silent: str = ""  # why it is never answered (bounce, auto-reply, list mail), in Chinese
    files: list[Attachment] = field(default_factory=list)
    unusable: list[Unusable] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # attachments that are not forms or reports
    bounce: Bounce | None = None
    first_line: str = ""  # the first line the sender wrote (a confirmation starts with 确认)
    notes: list[str] = field(default_factory=list)  # what could not be read, for the ledger


def parse(
    raw: bytes, limits: Limits, report_suffixes: tuple[str, ...] = (), own: tuple[str, ...] = ()
) -> Incoming:
    """A message read from its bytes. `report_suffixes`: extensions of written reports (besides forms);
    `own`: our own addresses, whose messages are never answered."""
    message = email.message_from_bytes(raw, policy=RAW)
    sender_name, sender = _from(message)
    found_id = _MESSAGE_ID.search(header(message, "Message-ID"))
    incoming = Incoming(
        message_id=found_id.group(0) if found_id else f"<{hashlib.sha256(raw).hexdigest()[:40]}@local>",
        sender=sender,
        sender_name=sender_name,
        subject=header(message, "Subject"),
        date=_date(message),
        references=_references(message),
    )
    incoming.kind, incoming.why_silent = _kind(message, incoming, own)
    if incoming.kind == BOUNCE:
        incoming.bounce = _bounce(message)
        return incoming
    if incoming.kind == AUTO:
        return incoming
    _walk(message, incoming, limits, tuple(SPREADSHEET_SUFFIXES) + (".et",) + report_suffixes)
    return incoming


# --- headers ------------------------------------------------------------------------------------------------


class _RawHeaders(Compat32):
    """Header values exactly as they came, 8-bit bytes kept as surrogate escapes, for `decode` to read as
    UTF-8 or GBK; compat32 itself would turn them into replacement marks."""

    def header_fetch_parse(self, name: str, value: str) -> str:
        return value


RAW = _RawHeaders()


def decode(value: str) -> str:
    """A header value as people read it: RFC 2047 words decoded, raw 8-bit bytes read as UTF-8 or GB18030,
    an unknown charset read as GB18030 (what Chinese clients mislabel most), never an exception."""
    raw = _raw(value)
    if raw is None:
        return " ".join(value.split())  # already text
    if any(b > 127 for b in raw):  # no encoded words: raw bytes in the header
        return " ".join(_text(raw).split())
    try:
        chunks = decode_header(value)
    except Exception:  # malformed encoded words
        return " ".join(value.split())
    out = []
    for chunk, charset in chunks:
        if isinstance(chunk, str):
            out.append(chunk)
        else:
            out.append(_text(chunk, charset))
    return " ".join("".join(out).split())


def _raw(value: str) -> bytes | None:
    """The bytes a header value was parsed from (the parser keeps 8-bit bytes as surrogate escapes, or as
    Latin-1 characters once they went through some of its functions); None when it is real text."""
    for encoding in ("ascii", "latin-1"):
        try:
            return value.encode(encoding, "surrogateescape")
        except UnicodeEncodeError:
            continue
    return None


def _text(data: bytes, charset: str | None = None) -> str:
    for name in (charset, "utf-8", "gb18030"):
        if not name:
            continue
        if name.lower() in ("gb2312", "gbk", "x-gbk", "cp936"):
            name = "gb18030"  # a superset: what GB2312-labelled mail really holds
        try:
            return data.decode(name)
        except (LookupError, UnicodeDecodeError):
            continue
    return data.decode("gb18030", "replace")


def header(message: Message, name: str) -> str:
    try:
        value = message.get(name)
    except Exception:
        return ""
    return decode(str(value)) if value is not None else ""


def _from(message: Message) -> tuple[str, str]:
    try:
        pairs = getaddresses([str(v) for v in message.get_all("From", [])])
    except Exception:
        pairs = []
    if not pairs:
        return "", ""
    name, addr = pairs[0]
    addr = addr.strip().lower()
    return decode(name), addr if _raw(addr) is not None and addr.isascii() else ""


def _date(message: Message) -> dt.datetime | None:
    try:
        when = parsedate_to_datetime(str(message.get("Date", "")))
    except (TypeError, ValueError, IndexError):
        return None
    return when if when is not None and when.tzinfo is not None else None


def _references(message: Message) -> tuple[str, ...]:
    ids: list[str] = []
    for name in ("References", "In-Reply-To"):
        for found in _MESSAGE_ID.findall(str(message.get(name, "") or "")):
            if found not in ids:
                ids.append(found)
    return tuple(ids)


# --- never a mail loop (RFC 3834) ---------------------------------------------------------------------------


def _kind(message: Message, incoming: Incoming, own: tuple[str, ...]) -> tuple[str, str]:
    content_type = message.get_content_type()
    return_path = str(message.get("Return-Path", "") or "").strip()
    local = incoming.sender.split("@")[0]
    if (
        content_type == "multipart/report"
        or return_path in ("<>", "")
        and message.get("Return-Path") is not None
        or local in ("mailer-daemon", "postmaster")
        or "mailer-daemon" in return_path.lower()
    ):
        return BOUNCE, "退信(投递失败报告),不回复"
    auto = str(message.get("Auto-Submitted", "") or "").strip().lower()
    if auto and not auto.startswith("no"):
        return AUTO, f"自动发出的邮件(Auto-Submitted: {auto}),不回复"
    if (
        any(message.get(h) is not None for h in ("X-Autoreply", "X-Autorespond", "X-Auto-Reply"))
        or str(message.get("X-Autogenerated", "")).lower() == "reply"
        or _VACATION.match(incoming.subject)
    ):
        return AUTO, "自动回复(休假、外出等),不回复"
    if incoming.sender and incoming.sender in own:
        return AUTO, "本程序自己发出的邮件,不回复"
    precedence = str(message.get("Precedence", "") or "").strip().lower()
    if message.get("List-Id") is not None or precedence in ("bulk", "list", "junk"):
        return BULK, "群发或邮件列表的邮件,不回复"
    if not incoming.sender:
        return AUTO, "没有发件人地址,无法回复"
    return SUBMISSION, ""


def _bounce(message: Message) -> Bounce:
    """What a bounce says: the DSN's fields (RFC 3464) when it is one, else whatever the text names."""
    recipients: list[str] = []
    reason = ""
    original = ""
    for part in message.walk():
        kind = part.get_content_type()
        if kind == "message/delivery-status":
            blocks = part.get_payload()
            for block in blocks if isinstance(blocks, list) else []:
                if not isinstance(block, Message):
                    continue
                for name in ("Final-Recipient", "Original-Recipient"):
                    value = str(block.get(name, "") or "")
                    addr = value.split(";", 1)[-1].strip().strip("<>").lower()
                    if "@" in addr and addr not in recipients:
                        recipients.append(addr)
                status = str(block.get("Status", "") or "").strip()
                diagnostic = " ".join(str(block.get("Diagnostic-Code", "") or "").split())
                if status or diagnostic:
                    reason = reason or f"{status} {diagnostic}".strip()
        elif kind in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers") and not original:
            original = _original_id(part)
    if not original:  # a plain-text bounce: the first Message-ID it quotes that is not its own
        text = _plain_text(message, everything=True)
        own = str(message.get("Message-ID", ""))
        original = next((m for m in _MESSAGE_ID.findall(text) if m not in own), "")
    return Bounce(original, tuple(recipients), reason[:300] or "对方邮件服务器退回")


def _original_id(part: Message) -> str:
    payload = part.get_payload()
    if isinstance(payload, list) and payload and isinstance(payload[0], Message):
        inner = payload[0]
    else:
        try:
            data = part.get_payload(decode=True)
            inner = email.message_from_bytes(data if isinstance(data, bytes) else b"", policy=RAW)
        except Exception:
            return ""
    found = _MESSAGE_ID.search(str(inner.get("Message-ID", "") or ""))
    return found.group(0) if found else ""


def _plain_text(message: Message, everything: bool = False) -> str:
    """The first text/plain part the sender wrote (not an attachment); all of them when `everything`."""
    texts = []
    for part in message.walk():
        if part.get_content_type() != "text/plain" or _filename(part):
            continue
        try:
            data = part.get_payload(decode=True) or b""
        except Exception:
            continue
        texts.append(_text(bytes(data), part.get_content_charset()))
        if not everything:
            break
    return "\n".join(texts)


# --- attachments ------------------------------------------------------------------------------------------


def _filename(part: Message) -> str:
    """An attachment's name: RFC 2231 (Content-Disposition filename*, then Content-Type name*), RFC 2047
    inside the quotes (Outlook, Foxmail), or raw GBK/UTF-8 bytes (older Chinese clients)."""
    for param, where in (("filename", "content-disposition"), ("name", "content-type")):
        try:
            value = part.get_param(param, header=where)
        except Exception:
            continue
        if not value:
            continue
        if isinstance(value, tuple):  # RFC 2231
            charset = value[0] or "utf-8"
            raw = value[2].encode("latin-1", "replace") if isinstance(value[2], str) else bytes(value[2])
            name = _text(raw, charset)
        else:
            name = decode(collapse_rfc2231_value(value))
        name = decode(name) if "=?" in name else name
        if name.strip():
            return name.strip()
    return ""


def _walk(message: Message, incoming: Incoming, limits: Limits, usable: tuple[str, ...]) -> None:
    """Every attachment, forwarded messages' included (walk goes into message/rfc822 parts)."""
    wrote_first_line = False
    for part in message.walk():
        if part.is_multipart():
            continue
        name = _filename(part)
        disposition = str(part.get("Content-Disposition", "") or "").split(";")[0].strip().lower()
        if not name and disposition != "attachment":
            if not wrote_first_line and part.get_content_type() == "text/plain":
                wrote_first_line = True
                incoming.first_line = _first_line(part)
            continue
        if (
            part.get("Content-ID") is not None
            and disposition != "attachment"
            and part.get_content_maintype() == "image"
        ):
            continue  # a logo in an HTML signature
        try:
            data = part.get_payload(decode=True)
        except Exception as exc:
            incoming.notes.append(f"附件“{name}”无法解码({type(exc).__name__})")
            continue
        if not isinstance(data, bytes):
            continue
        _take(name or "附件", data, part.get_content_type(), incoming, limits, usable)


def _first_line(part: Message) -> str:
    try:
        text = _text(bytes(part.get_payload(decode=True) or b""), part.get_content_charset())
    except Exception:
        return ""
    return next((line.strip() for line in text.splitlines() if line.strip()), "")


def _take(
    name: str, data: bytes, content_type: str, incoming: Incoming, limits: Limits, usable: tuple[str, ...]
) -> None:
    suffix = PurePosixPath(name.replace("\\", "/")).suffix.lower()
    if name.lower() == "winmail.dat" or content_type == "application/ms-tnef":
        incoming.unusable.append(
            Unusable(
                name,
                (
                    "这是 Outlook 以“RTF 格式”发送时打包的 winmail.dat,附件被包在里面无法取出;请在 Outlook 中把邮件格式改为"
                    "“HTML”或“纯文本”(文件 → 选项 → 邮件 → 撰写邮件),再把报表作为附件重新发送"
                ),
            )
        )
        return
    archive = next((what for magic, what in _MAGIC if data.startswith(magic)), ARCHIVES.get(suffix))
    if archive:
        incoming.unusable.append(
            Unusable(
                name,
                (
                    f"这是一个 {archive} 压缩包,本系统无法打开;请直接把 Excel 报表(和报告)作为附件发送,"
                    "不要压缩;如一定要压缩,请用 zip 格式"
                ),
            )
        )
        return
    if suffix == ".zip" or data.startswith(b"PK\x03\x04") and suffix not in usable:
        _unzip(name, data, incoming, limits, usable)
        return
    if suffix in usable:
        incoming.files.append(Attachment(name, data))
    else:
        incoming.ignored.append(name)


def _unzip(name: str, data: bytes, incoming: Incoming, limits: Limits, usable: tuple[str, ...]) -> None:
    """A zip's files, with the limits a workbook gets (size, unzipped size, ratio) and a count; no link, no
    path: each member is taken by its base name alone. Names without the UTF-8 flag are GBK (Windows)."""
    opened = _opened_zip(data, limits)
    if isinstance(opened, str):
        incoming.unusable.append(Unusable(name, opened))
        return
    archive, infos = opened
    for info in infos:
        member = _member_name(info)
        base = PurePosixPath(member.replace("\\", "/")).name
        if not base or base.startswith(".") or "__MACOSX" in member:
            continue
        if stat.S_ISLNK(info.external_attr >> 16):
            incoming.notes.append(f"压缩包“{name}”中的“{member}”是一个链接,未取出")
            continue
        if info.file_size > limits.max_bytes:
            incoming.unusable.append(Unusable(f"{name}/{member}", "文件过大,不像是报表;请只发送填好的报表"))
            continue
        try:
            inner = archive.read(info)
        except (zipfile.BadZipFile, OSError, ValueError, EOFError, NotImplementedError, RuntimeError) as exc:
            incoming.unusable.append(
                Unusable(
                    f"{name}/{member}", f"无法从压缩包中取出({type(exc).__name__});请直接把报表作为附件发送"
                )
            )
            continue
        suffix = PurePosixPath(base).suffix.lower()
        if suffix == ".zip" or suffix in ARCHIVES:
            incoming.unusable.append(
                Unusable(f"{name}/{member}", "压缩包里又套了压缩包;请直接把报表作为附件发送")
            )
        elif suffix in usable:
            incoming.files.append(Attachment(base, inner))
        else:
            incoming.ignored.append(f"{name}/{base}")


def _opened_zip(data: bytes, limits: Limits) -> tuple[zipfile.ZipFile, list[zipfile.ZipInfo]] | str:
    """The archive and its files, or why it is not opened (damaged, encrypted, too many or too large)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
        infos = [i for i in archive.infolist() if not i.is_dir()]
    except (zipfile.BadZipFile, zipfile.LargeZipFile, OSError, ValueError, EOFError):
        return "压缩包已损坏或不完整,无法打开;请直接把报表作为附件重新发送"
    if any(i.flag_bits & 0x1 for i in infos):
        return "压缩包设置了密码,无法打开;请不要加密,直接把报表作为附件重新发送"
    total = sum(i.file_size for i in infos)
    ratio = total / max(sum(i.compress_size for i in infos), 1)
    if (
        len(infos) > MAX_ZIP_FILES
        or total > limits.max_unzipped
        or total > 2**20
        and ratio > limits.max_ratio
    ):
        return (
            f"压缩包内文件过多或解压后过大({len(infos)} 个文件,解压后 {total / 2**20:.1f} MB),不像是报表,"
            "为安全起见不予打开;请直接把报表作为附件发送"
        )
    return archive, infos


def _member_name(info: zipfile.ZipInfo) -> str:
    """A member's name as its maker wrote it: zipfile reads names without the UTF-8 flag as cp437; Chinese
    Windows wrote them in GBK (and some tools write UTF-8 without setting the flag)."""
    if info.flag_bits & 0x800:
        return info.filename
    try:
        raw = info.filename.encode("cp437")
    except UnicodeEncodeError:
        return info.filename
    return _text(raw)
