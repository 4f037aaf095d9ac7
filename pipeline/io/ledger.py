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
from functools import lru_cache
from pathlib import Path
from typing import Any

from pipeline.model import Finding, Submission, Verdict

Key = tuple[str, str, str]  # (section, row, field), as a form's values are keyed

SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- relative to the inbox; a name that is not UTF-8 as its raw bytes (BLOB)
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    sha256 TEXT PRIMARY KEY,        -- the same bytes under another name are the same submission
    file TEXT NOT NULL,             -- the name it first came under
    path TEXT NOT NULL,             -- where in the inbox, as files.path
    size INTEGER NOT NULL,
    received TEXT NOT NULL,         -- when it reached the inbox (file time), ISO with zone
    first_seen TEXT NOT NULL,       -- when a run first saw it
    kind TEXT,                      -- form / report / unknown
    unit TEXT,
    item TEXT,
    form TEXT,
    version INTEGER,
    verdict TEXT,                   -- NULL until checked
    findings TEXT,                  -- JSON list of findings
    "values" TEXT,                  -- JSON of the normalised values, for consolidation
    explained INTEGER DEFAULT 0
);
CREATE INDEX IF NOT EXISTS submissions_unit_item ON submissions (unit, item);
CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,           -- once per (submission, recipient), or (reminder, unit, day)
    kind TEXT NOT NULL,             -- feedback / reminder
    unit TEXT NOT NULL,
    recipient TEXT NOT NULL,
    sha256 TEXT,
    subject TEXT NOT NULL,
    eml TEXT NOT NULL,              -- the message file in the outbox
    status TEXT NOT NULL,           -- pending / written / sending / sent / tempfail / refused / unknown
    code INTEGER,
    detail TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS archive (
    sha256 TEXT PRIMARY KEY,        -- each file's bytes, exactly as sent (older states: files in archive/)
    data BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS editions (
    number INTEGER PRIMARY KEY,     -- 终稿 editions, never overwritten
    as_of TEXT NOT NULL,
    path TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS generation (
    n INTEGER NOT NULL              -- one row; bumped by every change to the tables above
);
INSERT INTO generation (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM generation);
CREATE TABLE IF NOT EXISTS submissions_generation (
    n INTEGER NOT NULL              -- one row; bumped by every change to submissions alone
);
INSERT INTO submissions_generation (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM submissions_generation);
CREATE TABLE IF NOT EXISTS outputs (
    scope TEXT PRIMARY KEY,         -- the draft outputs of one level (province, or a --for unit)
    key TEXT NOT NULL,              -- what they were made from: rules, ledger generation, as-of, options
    files TEXT NOT NULL             -- JSON {path in the outbox: sha256}
);
"""
COLUMNS = "sha256, file, path, size, received, first_seen, kind, unit, item, form, version, verdict, findings, explained"
TRACKED = ("files", "submissions", "messages", "editions")
TRIGGERS = "".join(
    f"CREATE TRIGGER IF NOT EXISTS {table}_{op.lower()} AFTER {op} ON {table} "
    "BEGIN UPDATE generation SET n = n + 1; END;\n"
    for table in TRACKED
    for op in ("INSERT", "UPDATE", "DELETE")
) + "".join(
    f"CREATE TRIGGER IF NOT EXISTS submissions_{op.lower()}_loaded AFTER {op} ON submissions "
    "BEGIN UPDATE submissions_generation SET n = n + 1; END;\n"
    for op in ("INSERT", "UPDATE", "DELETE")
)


class Ledger:
    def __init__(self, state: Path):
        self.state = state
        self.archive_dir = state / "archive"
        state.mkdir(parents=True, exist_ok=True)
        self.db = sqlite3.connect(state / "ledger.sqlite", isolation_level=None, timeout=30)
        self.db.row_factory = sqlite3.Row
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.executescript(SCHEMA + TRIGGERS)
        # The submissions as last loaded or stored: (submissions_generation, with values, them). A run reads
        # them four times (feedback, status, draft, status again), 6,000 JSON-laden rows each at national scale.
        self._loaded: tuple[int, bool, list[Submission]] | None = None

    def close(self) -> None:
        self.db.close()

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
            out.update((sha, bytes(data)) for sha, data in
                       self.db.execute(f"SELECT sha256, data FROM archive WHERE sha256 IN ({marks})", chunk))
        for sha in shas:
            if sha not in out:  # kept by an earlier version, one file each
                with contextlib.suppress(FileNotFoundError):
                    out[sha] = self.archive_path(sha).read_bytes()
        return out

    def verify(self) -> list[str]:
        """Re-hash every archived file against the ledger; a line per difference, in Chinese."""
        problems = []
        for row in self.db.execute("SELECT sha256, file FROM submissions ORDER BY sha256"):
            data = self.bytes_of(row["sha256"])
            if data is None:
                problems.append(f"存档缺失:{row['file']}({row['sha256'][:12]}…)")
            elif hashlib.sha256(data).hexdigest() != row["sha256"]:
                problems.append(f"存档内容已改变:{row['file']}({row['sha256'][:12]}…)")
        return problems

    # --- files and submissions ---------------------------------------------------------------------------

    def known_files(self) -> dict[str, tuple[int, int]]:
        """Inbox path -> (size, mtime_ns) as last seen."""
        return {_path(r["path"]): (r["size"], r["mtime_ns"])
                for r in self.db.execute("SELECT path, size, mtime_ns FROM files")}

    def record_files(self, files: list[tuple[str, int, int, str, str, dt.datetime]], seen: dt.datetime) -> list[str]:
        """Record (path, size, mtime_ns, sha256, name, received) of files in one transaction; return the
        digests of those whose bytes are a new submission, in order.

        `path` is the inbox path as os.walk gives it (bytes that are not UTF-8 as surrogate escapes), `name`
        the file name to show people.
        """
        with self.transaction() as db:
            return [sha for path, size, mtime_ns, sha, name, received in files
                    if self._record_file(db, path, size, mtime_ns, sha, name, received, seen)]

    @staticmethod
    def _record_file(db: sqlite3.Connection, path: str, size: int, mtime_ns: int, sha256: str, name: str,
                     received: dt.datetime, seen: dt.datetime) -> bool:
        key = _stored_path(path)
        db.execute(
            "INSERT INTO files (path, size, mtime_ns, sha256, first_seen) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT(path) DO UPDATE SET size = excluded.size, mtime_ns = excluded.mtime_ns, "
            "sha256 = excluded.sha256",
            (key, size, mtime_ns, sha256, seen.isoformat()),
        )
        existing = db.execute("SELECT received FROM submissions WHERE sha256 = ?", (sha256,)).fetchone()
        if existing is not None:
            if dt.datetime.fromisoformat(existing["received"]) > received:
                db.execute("UPDATE submissions SET received = ?, file = ?, path = ? WHERE sha256 = ?",
                           (received.isoformat(), name, key, sha256))
            return False
        db.execute(
            "INSERT INTO submissions (sha256, file, path, size, received, first_seen) VALUES (?, ?, ?, ?, ?, ?)",
            (sha256, name, key, size, received.isoformat(), seen.isoformat()),
        )
        return True

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

    def latest(self, unit: str, item: str) -> Submission | None:
        found = self._select("WHERE unit = ? AND item = ? ORDER BY version DESC LIMIT 1", (unit, item))
        return found[0] if found else None

    def _select(self, where: str, args: tuple[Any, ...] = (), values: bool = True,
                decoded: dict[str, dict[Key, Any]] | None = None) -> list[Submission]:
        """Submissions as stored; `decoded`: values already at hand (as stored), by sha256, not read again."""
        columns = "*" if values else f"{COLUMNS}, NULL AS \"values\""
        known = decoded or {}
        return [_submission(r, known.get(r["sha256"]))
                for r in self.db.execute(f"SELECT {columns} FROM submissions {where}", args)]

    def record_checks(self, results: list[tuple[str, dict[str, Any]]]) -> None:
        """Store verdicts of one batch and renumber the versions of each (unit, item) by time received.

        The submissions are then kept loaded as stored, figures included, for the feedback, status and
        consolidation that follow: they would otherwise read every row again and decode the values just
        encoded (0.45 s of CPU at 6,000 forms)."""
        stored = [(sha256, fields, _stored_values(fields.get("values", {}))) for sha256, fields in results]
        with self.transaction() as db:
            db.executemany(
                'UPDATE submissions SET kind = ?, unit = ?, item = ?, form = ?, verdict = ?, findings = ?, '
                '"values" = ?, explained = ? WHERE sha256 = ?',
                [(fields["kind"], fields["unit"], fields["item"], fields["form"], fields["verdict"],
                  json.dumps([f.as_json() for f in fields["findings"]], ensure_ascii=False),
                  text, int(fields.get("explained", False)), sha256)
                 for sha256, fields, (_, text) in stored],
            )
            # One statement for every pair; only rows whose number changes are written.
            db.execute(
                "UPDATE submissions SET version = numbered.n FROM ("
                "  SELECT sha256, ROW_NUMBER() OVER (PARTITION BY unit, item ORDER BY received, path) AS n"
                "  FROM submissions WHERE unit IS NOT NULL AND item IS NOT NULL"
                ") AS numbered "
                "WHERE submissions.sha256 = numbered.sha256 AND submissions.version IS NOT numbered.n"
            )
            # Read within the transaction, so that no other connection's change can slip in unseen.
            decoded = {sha256: values for sha256, _, (values, _) in stored}
            loaded = (self._submissions_generation(), True, self._select("ORDER BY received, path", decoded=decoded))
        self._loaded = loaded

    # --- messages ------------------------------------------------------------------------------------------

    def message(self, key: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.db.execute("SELECT * FROM messages WHERE key = ?", (key,)).fetchone()
        return row

    def add_message(self, key: str, kind: str, unit: str, recipient: str, sha256: str | None, subject: str,
                    eml: str, when: dt.datetime) -> None:
        self.add_messages([(key, kind, unit, recipient, sha256, subject, eml)], when)

    def add_messages(self, rows: Sequence[tuple[str, str, str, str, str | None, str, str]], when: dt.datetime) -> None:
        """(key, kind, unit, recipient, sha256, subject, eml) of messages written, in one transaction."""
        with self.transaction() as db:
            db.executemany(
                "INSERT OR IGNORE INTO messages (key, kind, unit, recipient, sha256, subject, eml, status, updated) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, 'pending', ?)",
                [(*row, when.isoformat()) for row in rows],
            )

    def set_messages(self, keys: list[str], status: str, when: dt.datetime) -> None:
        with self.transaction() as db:
            db.executemany("UPDATE messages SET status = ?, updated = ? WHERE key = ?",
                           [(status, when.isoformat(), key) for key in keys])

    def set_message(self, key: str, status: str, when: dt.datetime, code: int | None = None, detail: str = "",
                    attempt: bool = False) -> None:
        with self.transaction() as db:
            db.execute(
                "UPDATE messages SET status = ?, code = ?, detail = ?, updated = ?, attempts = attempts + ? "
                "WHERE key = ?",
                (status, code, detail, when.isoformat(), int(attempt), key),
            )

    def messages(self, statuses: tuple[str, ...] | None = None) -> list[sqlite3.Row]:
        if statuses is None:
            return list(self.db.execute("SELECT * FROM messages ORDER BY key"))
        marks = ",".join("?" * len(statuses))
        return list(self.db.execute(f"SELECT * FROM messages WHERE status IN ({marks}) ORDER BY key", statuses))

    # --- editions -----------------------------------------------------------------------------------------

    def editions(self) -> list[sqlite3.Row]:
        return list(self.db.execute("SELECT * FROM editions ORDER BY number"))

    def add_edition(self, number: int, as_of: dt.datetime, path: str) -> None:
        with self.transaction() as db:
            db.execute("INSERT INTO editions (number, as_of, path) VALUES (?, ?, ?)", (number, as_of.isoformat(), path))

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
        for table, key in (("files", "path"), ("submissions", "sha256"), ("messages", "key"), ("editions", "number")):
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
    return dict(zip(keys, plain, strict=True)), json.dumps(dict(zip(names, plain, strict=True)), ensure_ascii=False)


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


def _submission(row: sqlite3.Row, values: dict[Key, Any] | None = None) -> Submission:
    """A stored row; `values`: its values as `_stored_values` gave them when they were stored, else read here."""
    findings = tuple(Finding(**f) for f in json.loads(row["findings"] or "[]"))
    if values is None:
        raw = json.loads(row["values"] or "{}")
        # only accepted forms are consolidated, and they hold no unknowns
        values = dict(zip(map(_key, raw), raw.values(), strict=True))
    return Submission(
        sha256=row["sha256"], file=row["file"], path=_path(row["path"]), size=row["size"],
        received=dt.datetime.fromisoformat(row["received"]), first_seen=dt.datetime.fromisoformat(row["first_seen"]),
        kind=row["kind"] or "", unit=row["unit"] or "", item=row["item"] or "", form=row["form"] or "",
        version=row["version"] or 0, verdict=Verdict(row["verdict"]) if row["verdict"] else None, findings=findings,
        values=values, explained=bool(row["explained"]),
    )
