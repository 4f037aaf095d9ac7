"""A real IMAP server for the tests: Debian's Dovecot (dovecot-imapd), started on 127.0.0.1 with a throw-away
configuration, user and mail folder, out of the way of any system Dovecot (its own base_dir, port,
instance name, passwd-file and mail location, all under a temporary folder).

`dovecot` is the fixture; `Dovecot.append` puts a message in the way a mail server delivers one, with
the time it was received (INTERNALDATE).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

from pipeline.campaign import config
from tests.conftest import require_program

USER, PASSWORD = "flbzb", "imap-s3cret"
PASSWORD_ENV = "TEST_IMAP_PASSWORD"

CONFIG = """
base_dir = {base}/run
state_dir = {base}/state
instance_name = pipeline-test-{port}
listen = 127.0.0.1
protocols = imap
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
first_valid_uid = 1
mail_location = maildir:{base}/mail/%u
log_path = {base}/dovecot.log
passdb {{
  driver = passwd-file
  args = scheme=PLAIN {base}/passwd
}}
userdb {{
  driver = passwd-file
  args = {base}/passwd
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
  chroot =
}}
service anvil {{
  chroot =
}}
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclasses.dataclass
class Dovecot:
    port: int
    base: Path

    def client(self):  # type: ignore[no-untyped-def]
        from imapclient import IMAPClient

        client = IMAPClient("127.0.0.1", port=self.port, ssl=False, timeout=30)
        client.login(USER, PASSWORD)
        return client

    def append(self, raw: bytes, when: dt.datetime | None = None) -> None:
        client = self.client()
        try:
            client.append("INBOX", raw, msg_time=when)
        finally:
            client.logout()

    def state(self) -> list[tuple[int, tuple[bytes, ...]]]:
        """Each message's UID and flags: what a read-only fetch must leave as it was."""
        client = self.client()
        try:
            client.select_folder("INBOX", readonly=True)
            return sorted(
                (uid, tuple(flags)) for uid, flags in client.get_flags(client.search(["ALL"])).items()
            )
        finally:
            client.logout()

    def mail(self, rules: config.Rules) -> config.Mail:
        """The campaign's mail settings pointed at this server."""
        return dataclasses.replace(
            rules.mail,
            imap_host="127.0.0.1",
            imap_port=self.port,
            imap_tls="none",
            imap_user=USER,
            imap_password_env=PASSWORD_ENV,
            imap_folder="INBOX",
        )


@contextlib.contextmanager
def running() -> Iterator[Dovecot]:
    """A Dovecot of its own on a free port of 127.0.0.1, stopped and removed at the end (the fixture's, and
    bench/mailbox.py's)."""
    binary = shutil.which("dovecot", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
    if binary is None:
        binary = require_program("dovecot", "dovecot-imapd")
    base = Path(tempfile.mkdtemp(prefix="pipeline-dovecot-"))
    base.chmod(0o755)  # the mail processes run as the mail user, who must reach its folder
    port = free_port()
    # Dovecot refuses mail access as root: as root the mail belongs to nobody, else to whoever runs the tests.
    owner = pwd.getpwnam("nobody") if os.geteuid() == 0 else pwd.getpwuid(os.geteuid())
    (base / "mail").mkdir()
    os.chown(base / "mail", owner.pw_uid, owner.pw_gid)
    (base / "passwd").write_text(
        f"{USER}:{{PLAIN}}{PASSWORD}:{owner.pw_uid}:{owner.pw_gid}::{base}/mail/{USER}\n", encoding="utf-8"
    )
    (base / "dovecot.conf").write_text(CONFIG.format(base=base, port=port), encoding="utf-8")
    process = subprocess.Popen(
        [binary, "-F", "-c", str(base / "dovecot.conf")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
    )
    try:
        deadline = time.monotonic() + 15
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    out = process.stdout.read().decode(errors="replace") if process.stdout else ""
                    log = (
                        (base / "dovecot.log").read_text(errors="replace")
                        if (base / "dovecot.log").exists()
                        else ""
                    )
                    raise RuntimeError(f"dovecot did not start:\n{out}\n{log}") from None
                time.sleep(0.05)
        yield Dovecot(port, base)
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(base, ignore_errors=True)


def pointed_rules(rules_text: str, imap_port: int, smtp_port: int) -> str:
    """rules.yaml's text with its mail settings pointed at a local IMAP and SMTP server (no TLS, no login)."""
    text = rules_text
    for old, new in (
        ("smtp_host: smtp.example.org", "smtp_host: 127.0.0.1"),
        ("smtp_port: 465", f"smtp_port: {smtp_port}"),
        ("  tls: ssl\n", "  tls: none\n"),
        ("  username: songwennuan@example.org\n", ""),
        ("imap_host: imap.example.org", "imap_host: 127.0.0.1"),
        ("imap_port: 993", f"imap_port: {imap_port}"),
        ("imap_tls: ssl ", "imap_tls: none "),
        ("imap_user: flbzb@sina.com", f"imap_user: {USER}"),
        ("imap_password_env: SONGWENNUAN_IMAP_PASSWORD", f"imap_password_env: {PASSWORD_ENV}"),
    ):
        if old not in text:
            raise ValueError(f"rules.yaml no longer holds {old!r}")
        text = text.replace(old, new)
    return text
