"""A unit's zip is opened with the limits a workbook gets: a damaged, encrypted or bomb-like archive is not
opened, and its sender is told how to send the forms instead; a good one gives up its forms."""

from __future__ import annotations

import io
import zipfile

from pipeline.campaign import config
from pipeline.io import incoming
from tests import mailclients


def arrived(rules: config.Rules, name: str, archive: bytes) -> incoming.Incoming:
    raw = mailclients.message("foxmail", "hkgh@example.org", [(name, archive)])
    return incoming.parse(raw, rules.limits)


def test_a_zip_of_forms_gives_up_each_form_by_its_gbk_name(rules: config.Rules) -> None:
    archive = mailclients.zipped([("海口附件1.xlsx", b"PK-one"), ("海口附件2.xlsx", b"PK-two")])
    got = arrived(rules, "报表.zip", archive)
    assert [(f.name, f.data) for f in got.files] == [
        ("海口附件1.xlsx", b"PK-one"),
        ("海口附件2.xlsx", b"PK-two"),
    ]
    assert not got.unusable


def test_an_encrypted_zip_is_not_opened_and_the_unit_is_told_to_send_it_plainly(rules: config.Rules) -> None:
    archive = bytearray(mailclients.zipped([("a.xlsx", b"data")], gbk=False))
    # The "encrypted" flag bit in the local and the central header, as WinRAR/7-Zip set it with a password.
    for signature, offset in ((b"PK\x03\x04", 6), (b"PK\x01\x02", 8)):
        at = archive.index(signature) + offset
        archive[at] |= 0x1
    got = arrived(rules, "加密.zip", bytes(archive))
    assert not got.files
    [refused] = got.unusable
    assert (
        refused.name == "加密.zip"
        and "设置了密码" in refused.reason
        and "直接把报表作为附件" in refused.reason
    )


def test_a_zip_bomb_is_not_unpacked(rules: config.Rules) -> None:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("a.xlsx", b"\0" * (rules.limits.max_unzipped + 2**20))
    got = arrived(rules, "炸弹.zip", out.getvalue())
    assert not got.files
    [refused] = got.unusable
    assert "解压后过大" in refused.reason


def test_a_damaged_zip_is_named_as_damaged(rules: config.Rules) -> None:
    whole = mailclients.zipped([("a.xlsx", b"data")])
    got = arrived(rules, "坏的.zip", whole[: len(whole) // 2])
    assert not got.files and "已损坏" in got.unusable[0].reason
