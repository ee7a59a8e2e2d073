"""The incident store's schema: the ordered migrations, SCHEMA_VERSION, and migrate() that applies them.

`schema_version` in the file records the newest migration applied; migrate() applies the ones after it, each in
one transaction. Imports sqlite3, the records' time stamps and StoreError; nothing of the rest of the bot.
"""

from __future__ import annotations

import contextlib
import sqlite3

from bot.core.records import now, ts
from bot.store.errors import StoreError

# Ordered; never edit an applied migration, append a new one.
MIGRATIONS: tuple[str, ...] = (
    # 1: incidents, their actions, the audit log, the outbox, silences
    """
    CREATE TABLE incidents (
        id INTEGER PRIMARY KEY,
        env TEXT NOT NULL,
        opened_at TEXT NOT NULL,
        verdict TEXT NOT NULL,
        status INTEGER,
        code TEXT,
        trigger TEXT NOT NULL,
        acknowledged_by TEXT,
        acknowledged_at TEXT,
        resolved_at TEXT,
        resolution TEXT,
        channel_id INTEGER,
        message_id INTEGER,
        alert_payload TEXT
    );
    CREATE INDEX incidents_env_open ON incidents (env, resolved_at);
    CREATE TABLE incident_actions (
        id INTEGER PRIMARY KEY,
        incident_id INTEGER NOT NULL REFERENCES incidents (id),
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        kind TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT ''
    );
    CREATE TABLE audit (
        id INTEGER PRIMARY KEY,
        at TEXT NOT NULL,
        actor TEXT NOT NULL,
        action TEXT NOT NULL,
        env TEXT,
        outcome TEXT NOT NULL
    );
    CREATE TABLE outbox (
        id INTEGER PRIMARY KEY,
        created_at TEXT NOT NULL,
        env TEXT NOT NULL,
        kind TEXT NOT NULL,
        payload TEXT NOT NULL,
        meta TEXT NOT NULL DEFAULT '{}',
        nonce TEXT NOT NULL,
        attempts INTEGER NOT NULL DEFAULT 0,
        sent_at TEXT,
        result TEXT
    );
    CREATE INDEX outbox_unsent ON outbox (sent_at);
    CREATE TABLE silences (
        id INTEGER PRIMARY KEY,
        env TEXT NOT NULL,
        created_at TEXT NOT NULL,
        until TEXT NOT NULL,
        reason TEXT NOT NULL,
        actor TEXT NOT NULL,
        ended_at TEXT
    );
    """,
    # 2: reminders, flapping and the held (silenced) state of an incident
    """
    ALTER TABLE incidents ADD COLUMN last_reminder_at TEXT;
    ALTER TABLE incidents ADD COLUMN flapping INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE incidents ADD COLUMN silenced INTEGER NOT NULL DEFAULT 0;
    """,
    # 3: drift memory: the API-visible objects of each environment's last drift run, so the next run can ask
    # PostgREST about those dropped since
    """
    CREATE TABLE IF NOT EXISTS drift_memory (
        env TEXT NOT NULL,
        kind TEXT NOT NULL,
        schema_name TEXT NOT NULL,
        name TEXT NOT NULL,
        part TEXT NOT NULL DEFAULT '',
        detail TEXT NOT NULL DEFAULT '',
        remembered_at TEXT NOT NULL,
        PRIMARY KEY (env, kind, schema_name, name, part)
    );
    """,
    # 4: an audit row is written when an action starts and completed when it ends (or marked interrupted)
    """
    ALTER TABLE audit ADD COLUMN status TEXT NOT NULL DEFAULT 'done';
    ALTER TABLE audit ADD COLUMN finished_at TEXT;
    CREATE INDEX audit_status ON audit (status);
    """,
)


SCHEMA_VERSION = len(MIGRATIONS)


def migrate(conn: sqlite3.Connection, upto: int | None = None) -> int:
    """Apply the migrations after the file's version, up to `upto` (all); return the version now in the file.

    Each migration is one transaction. When a statement fails, that error is the one raised: SQLite may
    already have rolled the transaction back by itself (disk full does), and a failing ROLLBACK must not
    replace the real cause with "cannot rollback - no transaction is active".
    """
    upto = len(MIGRATIONS) if upto is None else upto
    conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL, applied_at TEXT NOT NULL)")
    row = conn.execute("SELECT max(version) FROM schema_version").fetchone()
    current = int(row[0] or 0)
    if current > len(MIGRATIONS):
        raise StoreError(f"the store's schema version {current} is newer than this pgrst-ops ({len(MIGRATIONS)})")
    for version in range(current + 1, upto + 1):
        script = MIGRATIONS[version - 1]
        conn.execute("BEGIN")
        try:
            for statement in filter(str.strip, script.split(";")):
                conn.execute(statement)
            conn.execute("INSERT INTO schema_version VALUES (?, ?)", (version, ts(now())))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        current = version
    return current
