"""Messages built byte for byte the way the units' mail clients build them (their headers, boundaries,
charsets and attachment-name encodings, copied from real messages of each client), with the files a test
hands over as attachments. Static samples of what else arrives (bounces, auto-replies, broken MIME) are
in tests/mail_samples/.

    foxmail: RFC 2047 in the quoted name, GB2312/GBK, base64 everywhere (Foxmail 7.2)
    qq:      RFC 2047 in GB18030, application/octet-stream with a charset parameter (QQ 邮箱 web)
    netease: RFC 2047 in UTF-8 with the real MIME type (网易 163 邮箱, Coremail)
    outlook: RFC 2231 filename* in UTF-8 with size and dates (Outlook 2016)
    legacy:  raw GBK bytes in the quoted name, no encoding at all (old clients, some gateways)
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import urllib.parse
from email.utils import format_datetime

CLIENTS = ("foxmail", "qq", "netease", "outlook", "legacy")
XLSX = "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"


def _b(text: str, charset: str) -> str:
    return f"=?{charset}?B?{base64.b64encode(text.encode(charset)).decode()}?="


def _lines(data: bytes) -> str:
    encoded = base64.b64encode(data).decode()
    return "\r\n".join(encoded[i : i + 76] for i in range(0, len(encoded), 76))


def message(
    client: str,
    sender: str,
    files: list[tuple[str, bytes]],
    *,
    name: str = "海口市总工会",
    subject: str = "海口市总工会报送送温暖统计表",
    when: dt.datetime | None = None,
    message_id: str | None = None,
    body: str = "省总:\r\n附件是我单位的统计表,请查收。",
    to: str = "flbzb@sina.com",
    extra: str = "",
) -> bytes:
    """A message from `sender` as `client` builds it, carrying `files` (name, bytes)."""
    when = when or dt.datetime(2017, 1, 20, 10, 31, 2, tzinfo=dt.timezone(dt.timedelta(hours=8)))
    seed = hashlib.sha256(
        f"{client}{sender}{subject}{when}".encode() + b"".join(d for _, d in files)
    ).hexdigest()
    charset = {"foxmail": "GB2312", "qq": "gb18030", "netease": "UTF-8", "outlook": "utf-8", "legacy": "GBK"}[
        client
    ]
    head_charset = "GBK" if client == "foxmail" else charset  # Foxmail labels GB2312 but writes GBK
    boundary = {
        "foxmail": f"----=_001_NextPart{seed[:12]}_=----",
        "qq": f"----=_NextPart_{seed[:8].upper()}_{seed[8:16].upper()}_{seed[16:24].upper()}",
        "netease": f"----=_Part_{int(seed[:6], 16)}_{int(seed[6:14], 16)}.{int(seed[14:24], 16)}",
        "outlook": f"----=_NextPart_000_0001_01D272E4.{seed[:8].upper()}",
        "legacy": f"=_{seed[:16]}",
    }[client]
    mid = (
        message_id
        or {
            "foxmail": f"<2017012010310{seed[:8]}@example.org>",
            "qq": f"<tencent_{seed[:24].upper()}@qq.com>",
            "netease": f"<{seed[:8]}.{seed[8:12]}.{seed[12:23]}.Coremail.{sender.split('@')[0]}@163.com>",
            "outlook": f"<000001d272e4${seed[:8]}${seed[8:16]}@example.org>",
            "legacy": f"<{seed[:20]}@legacy.example.org>",
        }[client]
    )
    mailer = {
        "foxmail": "X-Mailer: Foxmail 7.2.9.116[cn]\r\nX-Has-Attach: yes\r\nX-Priority: 3\r\n",
        "qq": "X-QQ-MIME: TCMime 1.0 by Tencent\r\nX-Mailer: QQMail 2.x\r\nX-QQ-Mailer: QQMail 2.x\r\n",
        "netease": "X-Mailer: Coremail Webmail Server Version XT5.0.13 build 20170111(b2d5c1a0)\r\n"
        "X-Originating-IP: [202.100.200.3]\r\n",
        "outlook": "X-Mailer: Microsoft Outlook 16.0\r\nThread-Index: AdJy5IvGm2Z3QpXyT4KXk8sVn1cGDA==\r\n"
        "Content-Language: zh-cn\r\n",
        "legacy": "",
    }[client]
    from_name = name.encode(head_charset).decode("latin-1") if client == "legacy" else _b(name, head_charset)
    subject_value = (
        subject.encode(head_charset).decode("latin-1") if client == "legacy" else _b(subject, head_charset)
    )
    head = (
        f'Date: {format_datetime(when)}\r\nFrom: "{from_name}" <{sender}>\r\nTo: <{to}>\r\n'
        f"Subject: {subject_value}\r\n{mailer}Mime-Version: 1.0\r\nMessage-ID: {mid}\r\n{extra}"
        f'Content-Type: multipart/mixed;\r\n\tboundary="{boundary}"\r\n\r\n'
        "This is a multi-part message in MIME format.\r\n\r\n"
    )
    text = (
        f'--{boundary}\r\nContent-Type: text/plain;\r\n\tcharset="{charset}"\r\n'
        f"Content-Transfer-Encoding: base64\r\n\r\n{_lines(body.encode(head_charset))}\r\n\r\n"
    )
    parts = [head.encode("latin-1"), text.encode("ascii")]
    for file_name, data in files:
        parts.append(_attachment(client, boundary, file_name, data, head_charset))
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts)


def _attachment(client: str, boundary: str, name: str, data: bytes, charset: str) -> bytes:
    kind = XLSX if name.endswith(".xlsx") else "application/octet-stream"
    if client == "foxmail":
        header = (
            f'Content-Type: application/octet-stream;\r\n\tname="{_b(name, charset)}"\r\n'
            f"Content-Transfer-Encoding: base64\r\nContent-Disposition: attachment;\r\n"
            f'\tfilename="{_b(name, charset)}"\r\n'
        )
    elif client == "qq":
        header = (
            f'Content-Type: application/octet-stream;\r\n\tcharset="gb18030";\r\n\tname="{_b(name, "gb18030")}"\r\n'
            f'Content-Disposition: attachment; filename="{_b(name, "gb18030")}"\r\n'
            "Content-Transfer-Encoding: base64\r\n"
        )
    elif client == "netease":
        header = (
            f'Content-Type: {kind}; \r\n\tname="{_b(name, "UTF-8")}"\r\nContent-Transfer-Encoding: base64\r\n'
            f'Content-Disposition: attachment; \r\n\tfilename="{_b(name, "UTF-8")}"\r\n'
        )
    elif client == "outlook":
        quoted = urllib.parse.quote(name.encode("utf-8"), safe="")
        header = (
            f'Content-Type: {kind};\r\n\tname="{_b(name, "utf-8")}"\r\nContent-Transfer-Encoding: base64\r\n'
            f"Content-Disposition: attachment;\r\n\tfilename*=utf-8''{quoted};\r\n\tsize={len(data)};\r\n"
            '\tcreation-date="Fri, 20 Jan 2017 02:30:11 GMT";\r\n'
            '\tmodification-date="Fri, 20 Jan 2017 02:30:11 GMT"\r\n'
        )
    else:  # raw GBK bytes, unencoded
        raw = name.encode("gbk").decode("latin-1")
        header = (
            f'Content-Type: application/octet-stream; name="{raw}"\r\n'
            f'Content-Disposition: attachment; filename="{raw}"\r\nContent-Transfer-Encoding: base64\r\n'
        )
    return f"--{boundary}\r\n{header}\r\n{_lines(data)}\r\n\r\n".encode("latin-1")


def forwarded(
    inner: bytes, sender: str = "bangong@example.org", *, subject: str = "转发:送温暖统计表"
) -> bytes:
    """`inner` forwarded as an attachment (message/rfc822), as Outlook and Foxmail do."""
    boundary = "=_fwd_" + hashlib.sha256(inner).hexdigest()[:12]
    return (
        (
            f"From: {sender}\r\nTo: flbzb@sina.com\r\nSubject: {_b(subject, 'UTF-8')}\r\n"
            f"Date: Sat, 21 Jan 2017 09:00:00 +0800\r\nMessage-ID: <fwd.{boundary}@example.org>\r\nMIME-Version: 1.0\r\n"
            f'Content-Type: multipart/mixed; boundary="{boundary}"\r\n\r\n--{boundary}\r\n'
            "Content-Type: text/plain; charset=utf-8\r\n\r\nforwarded\r\n"
            f"--{boundary}\r\nContent-Type: message/rfc822\r\nContent-Disposition: attachment\r\n\r\n"
        ).encode()
        + inner
        + f"\r\n--{boundary}--\r\n".encode()
    )


def zipped(files: list[tuple[str, bytes]], *, gbk: bool = True) -> bytes:
    """A zip of `files` as Chinese Windows' built-in compressor makes it: names in GBK, no UTF-8 flag
    (`gbk=False`: UTF-8 names with the flag, as 7-Zip and macOS write them)."""
    import io
    import zipfile

    encoded = [name.encode("gbk") if gbk else name for name, _ in files]
    # zipfile writes any name that is not ASCII as UTF-8: ASCII stand-ins of the same length are written,
    # then replaced by the GBK bytes (a name is in no checksum).
    stand_ins = [chr(65 + i) * len(n) if isinstance(n, bytes) else n for i, n in enumerate(encoded)]
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        for stand_in, (_, data) in zip(stand_ins, files, strict=True):
            info = zipfile.ZipInfo(stand_in, date_time=(2017, 1, 20, 10, 0, 0))
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    raw = out.getvalue()
    for stand_in, name in zip(stand_ins, encoded, strict=True):
        if isinstance(name, bytes):
            raw = raw.replace(stand_in.encode("ascii"), name)
    return raw
