"""The ledger's tables, and how a ledger written by an earlier version is brought up to them.

A ledger carries its schema version in SQLite's `user_version`; `migrate` takes one of any earlier
version to the current one in a single transaction, keeping every row.
"""

from __future__ import annotations

import sqlite3

VERSION = 4

TABLES = """
CREATE TABLE IF NOT EXISTS files (
    path TEXT PRIMARY KEY,          -- relative to the inbox (a name that is not UTF-8 as its raw bytes, a BLOB)
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    ctime_ns INTEGER,               -- with the inode: what no copying tool can set back (NULL: not yet known)
    inode INTEGER,
    sha256 TEXT NOT NULL,
    first_seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS submissions (
    id TEXT PRIMARY KEY,            -- sha256, or sha256#n when the same bytes came back later as a new event
    sha256 TEXT NOT NULL,
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
    explained INTEGER DEFAULT 0,
    explanation TEXT,               -- what the unit wrote in the form's 填报说明, when anything
    held TEXT                       -- why it is not counted yet (a sender not on file: 待确认), NULL when it is
);
CREATE INDEX IF NOT EXISTS submissions_unit_item ON submissions (unit, item);
CREATE INDEX IF NOT EXISTS submissions_sha256 ON submissions (sha256);
CREATE TABLE IF NOT EXISTS messages (
    key TEXT PRIMARY KEY,           -- once per (submission, recipient), or (reminder, unit, day)
    kind TEXT NOT NULL,             -- feedback / reminder
    unit TEXT NOT NULL,
    recipient TEXT NOT NULL,        -- the one address this message goes to
    sha256 TEXT,                    -- the submission it answers (its id)
    subject TEXT NOT NULL,
    eml TEXT NOT NULL,              -- the copy for people in the outbox, made from `mime`
    status TEXT NOT NULL,           -- pending / written / sending / sent / tempfail / refused / unknown
    code INTEGER,
    detail TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    updated TEXT NOT NULL,
    message_id TEXT,                -- its Message-ID, fixed before it is ever sent
    mime BLOB                       -- the message as it is sent: what sending reads, never the .eml
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
CREATE TABLE IF NOT EXISTS skipped (
    path TEXT NOT NULL,             -- what the last intake passed over, and why
    reason TEXT NOT NULL,
    seen TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS generation (
    n INTEGER NOT NULL              -- one row, bumped by every change to the tracked tables
);
INSERT INTO generation (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM generation);
CREATE TABLE IF NOT EXISTS submissions_generation (
    n INTEGER NOT NULL              -- one row, bumped by every change to submissions alone
);
INSERT INTO submissions_generation (n) SELECT 0 WHERE NOT EXISTS (SELECT 1 FROM submissions_generation);
CREATE TABLE IF NOT EXISTS outputs (
    scope TEXT PRIMARY KEY,         -- the draft outputs of one level (province, or a --for unit)
    key TEXT NOT NULL,              -- what they were made from: rules, ledger generation, as-of, options
    files TEXT NOT NULL             -- JSON {path in the outbox: sha256}
);
CREATE TABLE IF NOT EXISTS mails (
    id INTEGER PRIMARY KEY,         -- each message taken from the campaign mailbox, once
    mailbox TEXT NOT NULL,          -- host/user/folder it came from
    uidvalidity INTEGER NOT NULL,
    uid INTEGER NOT NULL,
    message_id TEXT,                -- its Message-ID (or a digest of its bytes when it has none)
    sender TEXT NOT NULL,           -- the From address
    sender_name TEXT,
    date TEXT,                      -- its Date header, ISO with zone (NULL when missing or malformed)
    received TEXT NOT NULL,         -- when the server received it (INTERNALDATE): the time for the deadline
    subject TEXT,
    refs TEXT,                      -- its References and Message-ID, for replies in its thread
    kind TEXT NOT NULL,             -- submission / empty / unusable / bounce / auto / bulk / duplicate / confirm
    folder TEXT,                    -- where in the inbox its attachments were saved
    note TEXT,                      -- what was taken, refused or matched, in Chinese
    confirmed TEXT,                 -- who confirmed a sender not on file, and when (NULL: not confirmed)
    taken TEXT NOT NULL,
    UNIQUE (mailbox, uidvalidity, uid)
);
CREATE INDEX IF NOT EXISTS mails_message_id ON mails (message_id);
CREATE TABLE IF NOT EXISTS mail_files (
    path TEXT PRIMARY KEY,          -- an inbox path a message's attachment was saved under
    mail INTEGER NOT NULL REFERENCES mails (id)
);
CREATE TABLE IF NOT EXISTS reviews (
    n INTEGER PRIMARY KEY,          -- in the order staff decided: the last one for a version counts
    submission TEXT NOT NULL,       -- the version decided on (submissions.id): a later one is not covered
    unit TEXT NOT NULL,
    item TEXT NOT NULL,
    action TEXT NOT NULL,           -- accept (省总接受, despite errors) / return (退回, although it passed)
    reason TEXT NOT NULL,
    by TEXT NOT NULL,               -- who decided: the OS user, or --by
    at TEXT NOT NULL                -- when, ISO with zone
);
CREATE TABLE IF NOT EXISTS meta (
    key TEXT PRIMARY KEY,           -- facts about the ledger itself, such as the level it belongs to
    value TEXT NOT NULL
);
"""
TRACKED = ("files", "submissions", "messages", "editions", "skipped", "mails", "reviews")
TRIGGERS = (
    "".join(
        f"CREATE TRIGGER IF NOT EXISTS {table}_{op.lower()} AFTER {op} ON {table} "
        "BEGIN UPDATE generation SET n = n + 1; END;\n"
        for table in TRACKED
        for op in ("INSERT", "UPDATE", "DELETE")
    )
    + "".join(
        f"CREATE TRIGGER IF NOT EXISTS submissions_{op.lower()}_loaded AFTER {op} ON submissions "
        "BEGIN UPDATE submissions_generation SET n = n + 1; END;\n"
        for op in ("INSERT", "UPDATE", "DELETE")
    )
    + "".join(  # a review is part of the submissions as loaded
        f"CREATE TRIGGER IF NOT EXISTS reviews_{op.lower()}_loaded AFTER {op} ON reviews "
        "BEGIN UPDATE submissions_generation SET n = n + 1; END;\n"
        for op in ("INSERT", "UPDATE", "DELETE")
    )
)

_SUBMISSION_COLUMNS = (
    "sha256, file, path, size, received, first_seen, kind, unit, item, form, version, verdict, "
    'findings, "values", explained'
)


def _columns(db: sqlite3.Connection, table: str) -> set[str]:
    return {row[1] for row in db.execute(f"PRAGMA table_info({table})")}


def migrate(db: sqlite3.Connection) -> None:
    """Create the tables, or bring a ledger of an earlier version up to them, in one transaction."""
    if db.execute("PRAGMA user_version").fetchone()[0] >= VERSION:
        db.executescript(TRIGGERS)
        return
    db.execute("BEGIN IMMEDIATE")
    try:
        existing = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        if "submissions" in existing and "id" not in _columns(db, "submissions"):
            # Version 1 keyed a submission by its bytes: the same bytes could never be a second event.
            db.execute("ALTER TABLE submissions RENAME TO submissions_v1")
            for op in ("insert", "update", "delete"):
                db.execute(f"DROP TRIGGER IF EXISTS submissions_{op}")
                db.execute(f"DROP TRIGGER IF EXISTS submissions_{op}_loaded")
            db.execute("DROP INDEX IF EXISTS submissions_unit_item")
        for statement in TABLES.split(";"):
            if statement.strip():
                db.execute(statement)
        if "submissions_v1" in {
            row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }:
            db.execute(
                f"INSERT INTO submissions (id, {_SUBMISSION_COLUMNS}) "
                f"SELECT sha256, {_SUBMISSION_COLUMNS} FROM submissions_v1"
            )
            db.execute("DROP TABLE submissions_v1")
        for table, column, kind in (
            ("files", "ctime_ns", "INTEGER"),
            ("files", "inode", "INTEGER"),
            ("messages", "message_id", "TEXT"),
            ("messages", "mime", "BLOB"),
            ("submissions", "held", "TEXT"),
            ("submissions", "explanation", "TEXT"),
        ):
            if column not in _columns(db, table):
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {kind}")
        db.execute(f"PRAGMA user_version = {VERSION}")
        db.execute("COMMIT")
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.executescript(TRIGGERS)
