"""The incident store: an embedded SQLite file (stdlib sqlite3), used off the event loop.

One connection lives in one worker thread; every call is `await store.call(fn, ...)`, so the loop never
blocks on disk. The schema is versioned: MIGRATIONS are applied in order at open, and `schema_version`
records the newest one applied. Nothing to install or run for a new user.

Callers treat every StoreError as "the store is unavailable": probing and alerting go on in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import json
import logging
import sqlite3
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

from bot.core.records import (
    AUDIT_DONE,
    AUDIT_INTERRUPTED,
    AUDIT_STARTED,
    STOPPED_MID_ACTION,
    AuditEntry,
    Incident,
    OutboxRow,
    RememberedObject,
    Silence,
    now,
    parse_ts,
    ts,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

MEMORY = ":memory:"

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
OUTBOX_KEEP_DAYS = 30


class StoreError(Exception):
    """The store cannot be used (locked, disk full, corrupt, unwritable): worded for the operator."""


# SQLite's primary result codes (sqlite3.Error.sqlite_errorname) and errno values, by the cause they name.
_CAUSES: tuple[tuple[frozenset[str], str], ...] = (
    (frozenset({"SQLITE_FULL", "ENOSPC", "EDQUOT"}), "disk full (or the file reached its size limit)"),
    (
        frozenset({"SQLITE_READONLY", "SQLITE_PERM", "EROFS", "EACCES", "EPERM"}),
        "read-only: the file, its directory or its file system cannot be written",
    ),
    (frozenset({"SQLITE_CANTOPEN"}), "cannot open the file"),
    (frozenset({"SQLITE_BUSY", "SQLITE_LOCKED"}), "locked by another process"),
    (frozenset({"SQLITE_CORRUPT", "SQLITE_NOTADB"}), "corrupt, or not an SQLite database"),
    (frozenset({"SQLITE_IOERR"}), "disk I/O error"),
)


def _cause_code(err: BaseException) -> str:
    if isinstance(err, sqlite3.Error):
        name = getattr(err, "sqlite_errorname", "") or ""
        return "_".join(name.split("_")[:2])  # the primary code: SQLITE_READONLY_DIRECTORY -> SQLITE_READONLY
    if isinstance(err, OSError) and err.errno is not None:
        return errno.errorcode.get(err.errno, "")
    return ""


def _describe(err: BaseException) -> str:
    """The real cause first (disk full, read-only, locked, corrupt), then SQLite's or the OS's own words."""
    code = _cause_code(err)
    text = err.strerror if isinstance(err, OSError) and err.strerror else str(err)
    for codes, cause in _CAUSES:
        if code in codes:
            return f"{cause} ({text})"
    lowered = text.lower()  # an error without a code (older SQLite, a wrapped error)
    if "locked" in lowered or "busy" in lowered:
        return f"locked by another process ({text})"
    if "disk" in lowered and "full" in lowered:
        return f"disk full ({text})"
    if "not a database" in lowered or "malformed" in lowered:
        return f"corrupt, or not an SQLite database ({text})"
    if "readonly" in lowered or "read-only" in lowered:
        return f"read-only: the file, its directory or its file system cannot be written ({text})"
    return f"{type(err).__name__}: {text}"


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


class Store:
    """Async facade over one SQLite connection in a dedicated thread."""

    def __init__(self, path: str | Path, *, timeout_s: float = 2.0) -> None:
        self.path = str(path)
        self.timeout_s = timeout_s
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="pgrst-ops-store")
        self._conn: sqlite3.Connection | None = None
        self.version = 0

    # -- lifecycle ------------------------------------------------------------------------------
    async def open(self) -> Store:
        await self.call(self._open)
        return self

    def _open(self) -> None:
        try:
            self._connect()
        except sqlite3.Error as err:
            if _cause_code(err) == "SQLITE_CANTOPEN" and self.path != MEMORY:
                self._probe_directory(err)
            raise

    def _probe_directory(self, err: sqlite3.Error) -> None:
        """SQLite says only "unable to open": a file created beside it tells why (read-only, disk full, ...)."""
        try:
            with tempfile.TemporaryFile(dir=Path(self.path).parent):
                pass
        except OSError as cause:
            raise cause from err

    def _connect(self) -> None:
        if self.path != MEMORY:
            Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout_s, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        try:
            if self.path != MEMORY:
                conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA foreign_keys=ON")
            self.version = migrate(conn)
            # delivered messages are kept a while for the record, not forever
            cutoff = ts(now() - timedelta(days=OUTBOX_KEEP_DAYS))
            conn.execute("DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?", (cutoff,))
        except BaseException:
            conn.close()
            raise
        self._conn = conn

    async def close(self) -> None:
        if self._conn is not None:
            conn, self._conn = self._conn, None
            await asyncio.get_running_loop().run_in_executor(self._executor, conn.close)
        self._executor.shutdown(wait=False)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """Run fn in the store's thread; every sqlite/OS error becomes a StoreError saying what is wrong."""
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except StoreError:
            raise
        except (sqlite3.Error, OSError) as err:
            raise StoreError(f"incident store {self.path}: {_describe(err)}") from err
        except RuntimeError as err:  # executor shut down
            raise StoreError(f"incident store {self.path} is closed") from err

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StoreError(f"incident store {self.path} is not open")
        return self._conn

    def _exec(self, sql: str, params: tuple[Any, ...] = ()) -> sqlite3.Cursor:
        return self.conn.execute(sql, params)

    # -- incidents ------------------------------------------------------------------------------
    async def open_incident(
        self, env: str, *, opened_at: datetime, verdict: str, status: int | None, code: str | None, trigger: str
    ) -> Incident:
        def run() -> Incident:
            cur = self._exec(
                "INSERT INTO incidents (env, opened_at, verdict, status, code, trigger) VALUES (?, ?, ?, ?, ?, ?)",
                (env, ts(opened_at), verdict, status, code, trigger),
            )
            return Incident(int(cur.lastrowid or 0), env, opened_at, verdict, status, code, trigger)

        return await self.call(run)

    async def update_incident(self, incident_id: int, **fields: Any) -> None:
        allowed = {
            "acknowledged_by",
            "acknowledged_at",
            "resolved_at",
            "resolution",
            "channel_id",
            "message_id",
            "alert_payload",
            "last_reminder_at",
            "flapping",
            "silenced",
            "verdict",
        }
        unknown = set(fields) - allowed
        if unknown:
            raise ValueError(f"not incident fields: {sorted(unknown)}")
        if not fields:
            return
        values = []
        for value in fields.values():
            if isinstance(value, datetime):
                value = ts(value)
            elif isinstance(value, dict):
                value = json.dumps(value)
            elif isinstance(value, bool):
                value = int(value)
            values.append(value)
        sets = ", ".join(f"{k} = ?" for k in fields)
        await self.call(self._exec, f"UPDATE incidents SET {sets} WHERE id = ?", (*values, incident_id))

    async def get_incident(self, incident_id: int) -> Incident | None:
        def run() -> Incident | None:
            row = self._exec("SELECT * FROM incidents WHERE id = ?", (incident_id,)).fetchone()
            return Incident.from_row(row) if row else None

        return await self.call(run)

    async def open_incidents(self) -> list[Incident]:
        def run() -> list[Incident]:
            rows = self._exec("SELECT * FROM incidents WHERE resolved_at IS NULL ORDER BY id").fetchall()
            return [Incident.from_row(r) for r in rows]

        return await self.call(run)

    async def recent_incidents(self, env: str | None = None, limit: int = 10) -> list[Incident]:
        def run() -> list[Incident]:
            if env is None:
                rows = self._exec("SELECT * FROM incidents ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = self._exec(
                    "SELECT * FROM incidents WHERE env = ? ORDER BY id DESC LIMIT ?", (env, limit)
                ).fetchall()
            return [Incident.from_row(r) for r in rows]

        return await self.call(run)

    async def resolved_since(self, since: datetime) -> list[Incident]:
        def run() -> list[Incident]:
            rows = self._exec(
                "SELECT * FROM incidents WHERE resolved_at IS NOT NULL AND opened_at >= ?", (ts(since),)
            ).fetchall()
            return [Incident.from_row(r) for r in rows]

        return await self.call(run)

    async def add_action(self, incident_id: int, actor: str, kind: str, detail: str = "") -> None:
        await self.call(
            self._exec,
            "INSERT INTO incident_actions (incident_id, at, actor, kind, detail) VALUES (?, ?, ?, ?, ?)",
            (incident_id, ts(now()), actor, kind, detail),
        )

    async def actions(self, incident_id: int) -> list[tuple[datetime, str, str, str]]:
        def run() -> list[tuple[datetime, str, str, str]]:
            rows = self._exec(
                "SELECT at, actor, kind, detail FROM incident_actions WHERE incident_id = ? ORDER BY id",
                (incident_id,),
            ).fetchall()
            return [(parse_ts(r["at"]) or now(), r["actor"], r["kind"], r["detail"]) for r in rows]

        return await self.call(run)

    # -- audit ----------------------------------------------------------------------------------
    async def audit(self, actor: str, action: str, env: str | None, outcome: str) -> None:
        """An action that starts and ends at once (acknowledge, silence...)."""
        stamp = ts(now())
        await self.call(
            self._exec,
            "INSERT INTO audit (at, actor, action, env, outcome, status, finished_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (stamp, actor, action, env, outcome, AUDIT_DONE, stamp),
        )

    async def audit_begin(self, actor: str, action: str, env: str | None) -> int:
        """The intent, before anything is done; returns the row to complete with audit_end."""

        def run() -> int:
            cur = self._exec(
                "INSERT INTO audit (at, actor, action, env, outcome, status) VALUES (?, ?, ?, ?, ?, ?)",
                (ts(now()), actor, action, env, "in progress", AUDIT_STARTED),
            )
            return int(cur.lastrowid or 0)

        return await self.call(run)

    async def audit_end(self, row_id: int, outcome: str, *, status: str = AUDIT_DONE) -> None:
        await self.call(
            self._exec,
            "UPDATE audit SET outcome = ?, status = ?, finished_at = ? WHERE id = ?",
            (outcome, status, ts(now()), row_id),
        )

    async def audit_mark_unfinished(self) -> int:
        """At start: rows a previous process left `started` were interrupted by its end. Returns how many."""

        def run() -> int:
            cur = self._exec(
                "UPDATE audit SET status = ?, outcome = ?, finished_at = ? WHERE status = ?",
                (AUDIT_INTERRUPTED, STOPPED_MID_ACTION, ts(now()), AUDIT_STARTED),
            )
            return cur.rowcount

        return await self.call(run)

    async def audit_log(
        self, limit: int = 50, *, status: str | None = None, since: datetime | None = None
    ) -> list[AuditEntry]:
        def run() -> list[AuditEntry]:
            rows = self._exec(
                "SELECT * FROM audit WHERE (? IS NULL OR status = ?) AND (? IS NULL OR at >= ?) ORDER BY id DESC LIMIT ?",
                (status, status, ts(since), ts(since), limit),
            ).fetchall()
            return [AuditEntry.from_row(r) for r in rows]

        return await self.call(run)

    # -- outbox ---------------------------------------------------------------------------------
    async def outbox_add(self, env: str, kind: str, payload: dict[str, Any], meta: dict[str, Any], nonce: str) -> int:
        def run() -> int:
            cur = self._exec(
                "INSERT INTO outbox (created_at, env, kind, payload, meta, nonce) VALUES (?, ?, ?, ?, ?, ?)",
                (ts(now()), env, kind, json.dumps(payload), json.dumps(meta), nonce),
            )
            return int(cur.lastrowid or 0)

        return await self.call(run)

    async def outbox_attempt(self, row_id: int) -> None:
        await self.call(self._exec, "UPDATE outbox SET attempts = attempts + 1 WHERE id = ?", (row_id,))

    async def outbox_sent(self, row_id: int, result: dict[str, Any] | None) -> None:
        await self.call(
            self._exec,
            "UPDATE outbox SET sent_at = ?, result = ? WHERE id = ?",
            (ts(now()), json.dumps(result), row_id),
        )

    async def outbox_update(self, row_id: int, payload: dict[str, Any], meta: dict[str, Any]) -> None:
        """A queued post takes the payload of a later edit of it (it has not gone out yet)."""
        await self.call(
            self._exec,
            "UPDATE outbox SET payload = ?, meta = ? WHERE id = ? AND sent_at IS NULL",
            (json.dumps(payload), json.dumps(meta), row_id),
        )

    async def outbox_result(self, nonce: str) -> dict[str, Any] | None:
        """Where a finished row landed (None while it is pending or unknown)."""

        def run() -> dict[str, Any] | None:
            row = self._exec("SELECT result FROM outbox WHERE nonce = ? AND sent_at IS NOT NULL", (nonce,)).fetchone()
            value = json.loads(row["result"]) if row and row["result"] else None
            return value if isinstance(value, dict) else None

        return await self.call(run)

    async def outbox_pending(self) -> list[OutboxRow]:
        def run() -> list[OutboxRow]:
            rows = self._exec("SELECT * FROM outbox WHERE sent_at IS NULL ORDER BY id").fetchall()
            return [
                OutboxRow(
                    r["id"],
                    r["env"],
                    r["kind"],
                    json.loads(r["payload"]),
                    json.loads(r["meta"]),
                    r["nonce"],
                    r["attempts"],
                    None,
                    None,
                )
                for r in rows
            ]

        return await self.call(run)

    async def outbox_count(self, *, unsent_only: bool = False) -> int:
        sql = "SELECT count(*) FROM outbox" + (" WHERE sent_at IS NULL" if unsent_only else "")
        return int(await self.call(lambda: self._exec(sql).fetchone()[0]))

    # -- silences -------------------------------------------------------------------------------
    async def add_silence(self, env: str, until: datetime, reason: str, actor: str) -> None:
        def run() -> None:
            self._exec("UPDATE silences SET ended_at = ? WHERE env = ? AND ended_at IS NULL", (ts(now()), env))
            self._exec(
                "INSERT INTO silences (env, created_at, until, reason, actor) VALUES (?, ?, ?, ?, ?)",
                (env, ts(now()), ts(until), reason, actor),
            )

        await self.call(run)

    async def end_silence(self, env: str) -> None:
        await self.call(
            self._exec, "UPDATE silences SET ended_at = ? WHERE env = ? AND ended_at IS NULL", (ts(now()), env)
        )

    async def active_silences(self) -> list[Silence]:
        def run() -> list[Silence]:
            rows = self._exec("SELECT * FROM silences WHERE ended_at IS NULL ORDER BY id").fetchall()
            return [
                Silence(
                    r["env"], parse_ts(r["until"]) or now(), r["reason"], r["actor"], parse_ts(r["created_at"]) or now()
                )
                for r in rows
            ]

        return await self.call(run)

    # -- drift memory ---------------------------------------------------------------------------
    async def drift_memory(self, env: str) -> list[RememberedObject]:
        def run() -> list[RememberedObject]:
            rows = self._exec(
                "SELECT kind, schema_name, name, part, detail FROM drift_memory WHERE env = ? "
                "ORDER BY kind, schema_name, name, part",
                (env,),
            ).fetchall()
            return [RememberedObject(r["kind"], r["schema_name"], r["name"], r["part"], r["detail"]) for r in rows]

        return await self.call(run)

    async def replace_drift_memory(self, env: str, objects: list[RememberedObject]) -> None:
        """What the environment's API should serve now: replaces the previous run's memory in one transaction."""

        def run() -> None:
            at = ts(now())
            self._exec("BEGIN")
            try:
                self._exec("DELETE FROM drift_memory WHERE env = ?", (env,))
                self.conn.executemany(
                    "INSERT OR REPLACE INTO drift_memory (env, kind, schema_name, name, part, detail, remembered_at) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [(env, o.kind, o.schema, o.name, o.part, o.detail, at) for o in objects],
                )
                self._exec("COMMIT")
            except BaseException:
                self._exec("ROLLBACK")
                raise

        await self.call(run)


async def open_store(path: str) -> Store | None:
    """The store, migrated; None (and one clear error in the log) when it cannot be opened."""
    store = Store(path)
    try:
        await store.open()
    except StoreError as err:
        log.error("%s: incidents are kept in memory only; probing and alerting go on", err)
        await store.close()
        return None
    return store
