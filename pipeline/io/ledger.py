"""The submission ledger: an embedded SQLite file in the state folder, with a content-addressed archive.

Every file ever seen is recorded here with its bytes kept by sha256, so nothing sent by a unit is lost
even if the inbox is cleaned; every change is a transaction, so a run killed at any point leaves a
state that the next run completes.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import math
import os
import sqlite3
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.io import ledger_schema
from pipeline.model import Finding, Refused, Review, Submission, Verdict

Key = tuple[str, str, str]  # (section, row, field), as a form's values are keyed
Signature = tuple[int, int, int, int]  # a file's size, mtime_ns, ctime_ns and inode: changed when any is


@dataclass(frozen=True)
class Letter:
    """A message as the ledger keeps it before it is ever sent."""

    key: str  # once per (submission, recipient), or (reminder, unit, day)
    kind: str  # feedback / reminder
    unit: str
    recipient: str  # the one address it goes to
    submission: str | None  # the submission it answers
    subject: str
    eml: str  # where its copy for people is, in the outbox
    message_id: str
    mime: bytes  # what is sent


COLUMNS = (
    "id, sha256, file, path, size, received, first_seen, kind, unit, item, form, version, verdict, findings, "
    "explained, explanation, held"
)


FILE = "ledger.sqlite"
BACKUPS = "backup"  # the ledger as it was after each of the last runs that changed it
KEEP_BACKUPS = 3


class LedgerError(Refused):
    """The ledger cannot be used as it is; the message says what happened and what staff should do."""


class Ledger:
    def __init__(self, state: Path, level: str | None = None):
        self.state = state
        self.archive_dir = state / "archive"
        path = state / FILE
        if not path.exists() and backups(state):
            raise LedgerError(
                f"台账文件 {path} 不见了,但还有自动备份。为免重复发信、重复计数,本次不运行;"
                "请运行 pipeline verify --rebuild 用最近的备份恢复台账,再重新运行"
            )
        state.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(path, isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        try:
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=FULL")
            ledger_schema.migrate(self.db)
            if level is not None:
                self._belongs_to(level)
        except sqlite3.DatabaseError as exc:
            self.db.close()
            raise LedgerError(
                f"台账文件 {path} 已损坏,无法读取({exc})。请不要删除它;恢复办法:运行 pipeline verify --rebuild,"
                "用最近一次自动备份恢复台账(损坏的文件会改名保留),然后再运行 pipeline run"
            ) from None
        # The submissions as last loaded or stored: (submissions_generation, with values, them). A run reads
        # them four times (feedback, status, draft, status again), 6,000 JSON-laden rows each at national scale.
        self._loaded: tuple[int, bool, list[Submission]] | None = None

    def close(self) -> None:
        self.db.close()

    def _belongs_to(self, level: str) -> None:
        """A ledger is one level's: the first to use it claims it, another is refused."""
        row = self.db.execute("SELECT value FROM meta WHERE key = 'level'").fetchone()
        if row is None:
            with self.transaction() as db:
                db.execute("INSERT OR IGNORE INTO meta (key, value) VALUES ('level', ?)", (level,))
        elif row[0] != level:
            self.db.close()
            owner = "省总" if row[0] == "province" else row[0]
            asked = "省总" if level == "province" else level
            raise LedgerError(
                f"台账 {self.state} 属于{owner}一级,不能用于{asked}一级的运行;"
                "请检查 --state,或不写 --state 用本级默认的台账"
            )

    def backup(self, keep: int = KEEP_BACKUPS) -> Path:
        """A consistent copy of the ledger under backup/, the last `keep` kept (SQLite's online backup)."""
        folder = self.state / BACKUPS
        folder.mkdir(exist_ok=True)
        target = folder / f"ledger-{dt.datetime.now():%Y%m%d-%H%M%S-%f}.sqlite"
        partial = target.with_suffix(".partial")
        with contextlib.closing(sqlite3.connect(partial)) as copy:
            self.db.backup(copy)
        os.replace(partial, target)
        for old in backups(self.state)[keep:]:
            old.unlink(missing_ok=True)
        return target

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        self.db.execute("COMMIT")

    # --- the archive -------------------------------------------------------------------------------------

    def archive_path(self, sha256: str) -> Path:
        """Where an earlier version kept a file's bytes: one file each under `archive/`, still read."""
        return self.archive_dir / sha256[:2] / sha256

    def keep_many(self, files: Sequence[tuple[str, bytes]]) -> None:
        """Store each file's bytes by its sha256, (sha256, bytes) as the caller's threads hashed them, once
        and all in one transaction.

        The bytes live in the ledger's own SQLite file: 6,000 files kept in one transaction cost one sync,
        where as many archive files cost 0.1-0.5 ms of the kernel's time each. The commit is durable
        before the caller records the files, so a crash leaves either the bytes or nothing to find again.
        """
        if files:
            with self.transaction() as db:
                db.executemany("INSERT OR IGNORE INTO archive (sha256, data) VALUES (?, ?)", files)

    def bytes_of(self, sha256: str) -> bytes | None:
        """A file's bytes as kept; None when they are not (over the size limit, or lost)."""
        return self.kept_bytes([sha256]).get(sha256)

    def kept_bytes(self, shas: Sequence[str]) -> dict[str, bytes]:
        """The bytes of those of `shas` that are kept (not those over the size limit), read together."""
        out: dict[str, bytes] = {}
        for i in range(0, len(shas), 500):  # within SQLite's limit of parameters
            chunk = list(shas[i : i + 500])
            marks = ",".join("?" * len(chunk))
            out.update(
                (sha, bytes(data))
                for sha, data in self.db.execute(
                    f"SELECT sha256, data FROM archive WHERE sha256 IN ({marks})", chunk
                )
            )
        for sha in shas:
            if sha not in out:  # kept by an earlier version, one file each
                with contextlib.suppress(FileNotFoundError):
                    out[sha] = self.archive_path(sha).read_bytes()
        return out

    def verify(self) -> list[str]:
        """Re-hash every archived file against the ledger; a line per difference, in Chinese."""
        problems = []
        for row in self.db.execute("SELECT DISTINCT sha256, file FROM submissions ORDER BY sha256"):
            data = self.bytes_of(row["sha256"])
            if data is None:
                problems.append(f"存档缺失:{row['file']}({row['sha256'][:12]}…)")
            elif hashlib.sha256(data).hexdigest() != row["sha256"]:
                problems.append(f"存档内容已改变:{row['file']}({row['sha256'][:12]}…)")
        return problems

    # --- files and submissions ---------------------------------------------------------------------------

    def known_files(self) -> dict[str, Signature]:
        """Inbox path -> its signature as last seen."""
        return {
            _path(r["path"]): (r["size"], r["mtime_ns"], r["ctime_ns"], r["inode"])
            for r in self.db.execute("SELECT path, size, mtime_ns, ctime_ns, inode FROM files")
        }

    def record_files(
        self, files: list[tuple[str, Signature, str, str, dt.datetime]], seen: dt.datetime
    ) -> list[str]:
        """Record (path, signature, sha256, name, received) of files in one transaction; return the ids of
        the new submissions they are, in order.

        `path` is the inbox path as os.walk gives it (bytes that are not UTF-8 as surrogate escapes), `name`
        the file name to show people.
        """
        with self.transaction() as db:
            return [
                new
                for path, signature, sha, name, received in files
                if (new := self._record_file(db, path, signature, sha, name, received, seen))
            ]

    @staticmethod
    def _record_file(
        db: sqlite3.Connection,
        path: str,
        signature: Signature,
        sha256: str,
        name: str,
        received: dt.datetime,
        seen: dt.datetime,
    ) -> str | None:
        """The file recorded; the id of the submission it is, if it is a new one.

        The same bytes again are the same submission (a copy forwarded, saved under another name), unless
        the unit has sent another version of that item since: then they are sent again on purpose, a new
        event with its own verdict and feedback."""
        key = _stored_path(path)
        db.execute(
            "INSERT INTO files (path, size, mtime_ns, ctime_ns, inode, sha256, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "ctime_ns = excluded.ctime_ns, inode = excluded.inode, sha256 = excluded.sha256",
            (key, *signature, sha256, seen.isoformat()),
        )
        events = db.execute(
            "SELECT id, received, unit, item FROM submissions WHERE sha256 = ? ORDER BY received", (sha256,)
        ).fetchall()
        if not events:
            new = sha256
        else:
            last = events[-1]
            newest = (
                db.execute(
                    "SELECT max(received) FROM submissions WHERE unit = ? AND item = ? AND sha256 != ?",
                    (last["unit"], last["item"], sha256),
                ).fetchone()[0]
                if last["unit"]
                else None
            )
            if newest is None or newest < last["received"] or received.isoformat() <= newest:
                if len(events) == 1 and dt.datetime.fromisoformat(last["received"]) > received:
                    db.execute(
                        "UPDATE submissions SET received = ?, file = ?, path = ? WHERE id = ?",
                        (received.isoformat(), name, key, last["id"]),
                    )
                return None
            new = f"{sha256}#{len(events)}"
        db.execute(
            "INSERT INTO submissions (id, sha256, file, path, size, received, first_seen) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (new, sha256, name, key, signature[0], received.isoformat(), seen.isoformat()),
        )
        return new

    def set_skipped(self, skipped: Sequence[tuple[str, str]], seen: dt.datetime) -> None:
        """What the last intake passed over, and why (shown in the status)."""
        current = [
            (r["path"], r["reason"])
            for r in self.db.execute("SELECT path, reason FROM skipped ORDER BY rowid")
        ]
        if current == list(skipped):
            return  # unchanged: the ledger's generation stays, and a rerun rewrites nothing
        with self.transaction() as db:
            db.execute("DELETE FROM skipped")
            db.executemany(
                "INSERT INTO skipped (path, reason, seen) VALUES (?, ?, ?)",
                [(path, reason, seen.isoformat()) for path, reason in skipped],
            )

    def skipped(self) -> list[tuple[str, str]]:
        return [
            (r["path"], r["reason"])
            for r in self.db.execute("SELECT path, reason FROM skipped ORDER BY rowid")
        ]

    def unchecked(self) -> list[Submission]:
        return self._select("WHERE verdict IS NULL ORDER BY received, path")

    def submissions(self, values: bool = True) -> list[Submission]:
        """Every submission; `values=False` leaves out the figures, which only consolidation needs.

        Loaded again only when the submissions have changed since the last call; the objects are shared
        between calls, so callers must not change them."""
        n = self._submissions_generation()
        if self._loaded is None or self._loaded[0] != n or (values and not self._loaded[1]):
            self._loaded = (n, values, self._select("ORDER BY received, path", values=values))
        return list(self._loaded[2])

    def _submissions_generation(self) -> int:
        return int(self.db.execute("SELECT n FROM submissions_generation").fetchone()[0])

    def _select(
        self,
        where: str,
        args: tuple[Any, ...] = (),
        values: bool = True,
        decoded: dict[str, dict[Key, Any]] | None = None,
    ) -> list[Submission]:
        """Submissions as stored; `decoded`: values already at hand (as stored), by id, not read again."""
        columns = "*" if values else f'{COLUMNS}, NULL AS "values"'
        known = decoded or {}
        reviews = self.reviews()
        return [
            _submission(r, known.get(r["id"]), reviews.get(r["id"]))
            for r in self.db.execute(f"SELECT {columns} FROM submissions {where}", args)
        ]

    def reviews(self) -> dict[str, Review]:
        """Staff's decision on each version decided on: the last one, when it was decided more than once."""
        return {
            r["submission"]: Review(r["action"], r["reason"], r["by"], dt.datetime.fromisoformat(r["at"]))
            for r in self.db.execute("SELECT * FROM reviews ORDER BY n")
        }

    def add_review(self, sub: Submission, review: Review) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO reviews (submission, unit, item, action, reason, by, at) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (sub.id, sub.unit, sub.item, review.action, review.reason, review.by, review.at.isoformat()),
            )

    def record_checks(self, results: list[tuple[str, dict[str, Any]]]) -> None:
        """Store verdicts of one batch and renumber the versions of each (unit, item) by time received.

        The submissions are then kept loaded as stored, figures included, for the feedback, status and
        consolidation that follow: they would otherwise read every row again and decode the values just
        encoded (0.45 s of CPU at 6,000 forms)."""
        stored = [(sid, fields, _stored_values(fields.get("values", {}))) for sid, fields in results]
        with self.transaction() as db:
            db.executemany(
                "UPDATE submissions SET kind = ?, unit = ?, item = ?, form = ?, verdict = ?, findings = ?, "
                '"values" = ?, explained = ?, explanation = ?, held = ? WHERE id = ?',
                [
                    (
                        fields["kind"],
                        fields["unit"],
                        fields["item"],
                        fields["form"],
                        fields["verdict"],
                        json.dumps([f.as_json() for f in fields["findings"]], ensure_ascii=False),
                        text,
                        int(fields.get("explained", False)),
                        fields.get("explanation") or None,
                        fields.get("held") or None,
                        sid,
                    )
                    for sid, fields, (_, text) in stored
                ],
            )
            # One statement for every pair; only rows whose number changes are written. Files with the same
            # time under the same path (a copy that kept the time of the one it replaced) come in the order
            # they were recorded (rowid), never by their digests.
            db.execute(
                "UPDATE submissions SET version = numbered.n FROM ("
                "  SELECT id, ROW_NUMBER() OVER (PARTITION BY unit, item ORDER BY received, path, rowid) AS n"
                "  FROM submissions WHERE unit IS NOT NULL AND item IS NOT NULL"
                ") AS numbered "
                "WHERE submissions.id = numbered.id AND submissions.version IS NOT numbered.n"
            )
            # Read within the transaction, so that no other connection's change can slip in unseen.
            decoded = {sid: values for sid, _, (values, _) in stored}
            loaded = (
                self._submissions_generation(),
                True,
                self._select("ORDER BY received, path", decoded=decoded),
            )
        self._loaded = loaded

    # --- messages ------------------------------------------------------------------------------------------

    def message(self, key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute("SELECT * FROM messages WHERE key = ?", (key,)).fetchone()
        return row

    def add_messages(self, rows: Sequence[Letter], when: dt.datetime) -> None:
        """Messages written, in one transaction: each with its recipient, Message-ID and bytes, from which
        it is sent (never from the copy in the outbox)."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO messages (key, kind, unit, recipient, sha256, subject, eml, message_id, mime, "
                "status, updated) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                [
                    (
                        r.key,
                        r.kind,
                        r.unit,
                        r.recipient,
                        r.submission,
                        r.subject,
                        r.eml,
                        r.message_id,
                        r.mime,
                        when.isoformat(),
                    )
                    for r in rows
                ],
            )

    def set_messages(self, keys: list[str], status: str, when: dt.datetime) -> None:
        with self.transaction() as db:
            db.executemany(
                "UPDATE messages SET status = ?, updated = ? WHERE key = ?",
                [(status, when.isoformat(), key) for key in keys],
            )

    def set_message(
        self,
        key: str,
        status: str,
        when: dt.datetime,
        code: int | None = None,
        detail: str = "",
        attempt: bool = False,
    ) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE messages SET status = ?, code = ?, detail = ?, updated = ?, attempts = attempts + ? "
                "WHERE key = ?",
                (status, code, detail, when.isoformat(), int(attempt), key),
            )

    def set_mime(self, key: str, mime: bytes) -> None:
        with self.transaction() as db:
            db.execute("UPDATE messages SET mime = ? WHERE key = ?", (mime, key))

    def messages(self, statuses: tuple[str, ...] | None = None) -> list[sqlite3.Row]:
        if statuses is None:
            return list(self.db.execute("SELECT * FROM messages ORDER BY key"))
        marks = ",".join("?" * len(statuses))
        return list(
            self.db.execute(f"SELECT * FROM messages WHERE status IN ({marks}) ORDER BY key", statuses)
        )

    # --- editions -----------------------------------------------------------------------------------------

    def editions(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM editions ORDER BY number"))

    def add_edition(self, number: int, as_of: dt.datetime, path: str) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO editions (number, as_of, path) VALUES (?, ?, ?)",
                (number, as_of.isoformat(), path),
            )

    # --- what the outputs were made from ------------------------------------------------------------------

    def generation(self) -> int:
        """A number that changes whenever files, submissions, messages or editions change."""
        return int(self.db.execute("SELECT n FROM generation").fetchone()[0])

    def outputs(self, scope: str) -> tuple[str, dict[str, str]] | None:
        row = self.db.execute("SELECT key, files FROM outputs WHERE scope = ?", (scope,)).fetchone()
        return None if row is None else (row["key"], json.loads(row["files"]))

    def set_outputs(self, scope: str, key: str, files: dict[str, str]) -> None:
        with self.transaction() as db:
            db.execute(
                "INSERT INTO outputs (scope, key, files) VALUES (?, ?, ?) "
                "ON CONFLICT(scope) DO UPDATE SET key = excluded.key, files = excluded.files",
                (scope, key, json.dumps(files, ensure_ascii=False, sort_keys=True)),
            )

    def dump(self) -> dict[str, list[dict[str, Any]]]:
        """Every table as sorted plain rows: what tests compare between runs."""
        out = {}
        for table, key in (
            ("files", "path"),
            ("submissions", "id"),
            ("messages", "key"),
            ("editions", "number"),
            ("reviews", "n"),
        ):
            out[table] = [dict(r) for r in self.db.execute(f"SELECT * FROM {table} ORDER BY {key}")]
        return out


def _stored_path(path: str) -> str | bytes:
    """An inbox path as the ledger keys it: as text when it is UTF-8, else as its raw bytes.

    SQLite cannot hold the surrogate escapes os.walk makes of other bytes (GBK names from Chinese Windows
    unzip tools and mail clients). Raw bytes stay exact, never equal a text key, and read the same every
    run; paths that are UTF-8 keep the keys earlier runs gave them.
    """
    try:
        path.encode("utf-8")
    except UnicodeEncodeError:
        return os.fsencode(path)
    return path


def _path(stored: str | bytes) -> str:
    return os.fsdecode(stored) if isinstance(stored, bytes) else stored


def _stored_values(values: dict[Key, Any]) -> tuple[dict[Key, Any], str]:
    """A form's values as the ledger keeps them: JSON keyed `section|row|field` in key order, a blank number
    as null and a date as ISO text; and, as a dict, exactly what reading that JSON back gives."""
    keys, order, names = _key_order(tuple(values))
    held = list(values.values())
    plain = [_plain(held[i]) for i in order]
    return dict(zip(keys, plain, strict=True)), json.dumps(
        dict(zip(names, plain, strict=True)), ensure_ascii=False
    )


@lru_cache(maxsize=64)
def _key_order(keys: tuple[Key, ...]) -> tuple[tuple[Key, ...], tuple[int, ...], tuple[str, ...]]:
    """The keys sorted, where each sorted key stands among `keys`, and their stored names: the same for every
    form of a kind, so sorted and joined once rather than for each of 6,000 forms."""
    order = tuple(sorted(range(len(keys)), key=keys.__getitem__))
    return tuple(keys[i] for i in order), order, tuple("|".join(keys[i]) for i in order)


def _plain(v: Any) -> Any:
    """A value as JSON keeps it."""
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dt.date):
        return v.isoformat()
    return v


@lru_cache(maxsize=4096)
def _key(name: str) -> Key:
    """A stored value's name back to its key: the same few dozen names in every one of 6,000 rows."""
    section, row, field = name.split("|")
    return section, row, field


def _submission(
    row: sqlite3.Row, values: dict[Key, Any] | None = None, review: Review | None = None
) -> Submission:
    """A stored row; `values`: its values as `_stored_values` gave them when they were stored, else read here."""
    findings = tuple(Finding(**f) for f in json.loads(row["findings"] or "[]"))
    if values is None:
        raw = json.loads(row["values"] or "{}")
        # only forms read whole keep values; a figure that is not a number is blank (see checking)
        values = dict(zip(map(_key, raw), raw.values(), strict=True))
    return Submission(
        id=row["id"],
        sha256=row["sha256"],
        file=row["file"],
        path=_path(row["path"]),
        size=row["size"],
        received=dt.datetime.fromisoformat(row["received"]),
        first_seen=dt.datetime.fromisoformat(row["first_seen"]),
        kind=row["kind"] or "",
        unit=row["unit"] or "",
        item=row["item"] or "",
        form=row["form"] or "",
        version=row["version"] or 0,
        verdict=Verdict(row["verdict"]) if row["verdict"] else None,
        findings=findings,
        values=values,
        explained=bool(row["explained"]),
        explanation=row["explanation"] or "",
        held=row["held"] or "",
        review=review,
    )


def backups(state: Path) -> list[Path]:
    """The ledger's automatic backups, newest first."""
    folder = state / BACKUPS
    return sorted(folder.glob("ledger-*.sqlite"), reverse=True) if folder.is_dir() else []


def restore(state: Path) -> Path:
    """The ledger restored from its newest sound backup; a damaged ledger is kept beside it under another
    name. Returns the backup used; LedgerError when there is none to use."""
    for candidate in backups(state):
        try:
            with contextlib.closing(sqlite3.connect(f"file:{candidate}?mode=ro", uri=True)) as db:
                if db.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
                    continue
        except sqlite3.DatabaseError:
            continue
        path = state / FILE
        stamp = f"{dt.datetime.now():%Y%m%d-%H%M%S}"
        for suffix in ("", "-wal", "-shm"):
            old = state / (FILE + suffix)
            if old.exists():
                os.replace(old, state / f"{FILE}{suffix}.damaged-{stamp}")
        partial = path.with_suffix(".restoring")
        with (
            contextlib.closing(sqlite3.connect(f"file:{candidate}?mode=ro", uri=True)) as src,
            contextlib.closing(sqlite3.connect(partial)) as dst,
        ):
            src.backup(dst)
        os.replace(partial, path)
        return candidate
    raise LedgerError(f"{state / BACKUPS} 中没有可用的台账备份,无法自动恢复;请联系技术人员")
