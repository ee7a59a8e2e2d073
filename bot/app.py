"""The composition root: builds the settings' parts, the monitor with its sink, the services and the bot.

`python -m bot` runs `main()`: the Discord bot, or console mode when no token is set. Everything is built here
and passed in through constructors (the bot gets complete services: nothing is "not started yet"). This module
imports every package but discord itself: the Discord adapter is bot.chat.

With a PostgreSQL store the process is one of possibly several replicas: it first waits as a standby for the
leader lease (bot/postgres/lease.py; no gateway, no monitor, no delivery, only the endpoints), then runs as
without replicas, with the lease's fence in the monitor and the outbox; once the lease is lost it stops acting
at once and exits with LOST_LEASE, for its supervisor to restart it as a standby.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

from bot.chat.bot import COGS, PgrstOpsBot, run_bot
from bot.chat.sink import Channels, DiscordSink
from bot.cli_args import package_version, program_parser
from bot.config import ConfigError, Settings, Target, load_settings, read_optional_secret, resolve_targets
from bot.core.lease import Fence, LeaseTiming, Role, always_leading
from bot.delivery.console import TEXT, ConsoleSink
from bot.delivery.guard import StoreGuard
from bot.delivery.sink import AlertSink
from bot.delivery.webhook import RateLimiter, WebhookFallback
from bot.endpoints import Endpoints, Readiness
from bot.logs import LOG_FORMATS, setup_logging
from bot.messages.console_text import schedule_line, start_line
from bot.observe import Metrics, disable_created_metrics
from bot.ops.facade import Ops
from bot.ops.monitor import Monitor
from bot.ops.recovery import RecoveryOperator
from bot.postgres.lease import LeaderLease
from bot.postgrest.probe import Prober
from bot.postgrest.requests import make_http_client
from bot.supabase.watch import ProjectWatch

log = logging.getLogger("pgrst_ops")

LOST_LEASE = 3  # exit code: this replica lost the leader lease and stopped acting (restart it: it is a standby)


@dataclass(frozen=True)
class Parts:
    """What both modes share, built from the settings before the sink and the monitor."""

    settings: Settings
    targets: list[Target]
    http: httpx.AsyncClient
    prober: Prober
    operator: RecoveryOperator
    webhook: WebhookFallback
    guard: StoreGuard  # the incident store, once open
    metrics: Metrics  # what /metrics shows; one registry per bot
    projects: ProjectWatch | None = None  # the Supabase Management API, for environments that name a project
    fence: Fence = always_leading  # replicas: "still the leader?", asked before the monitor or the outbox acts


def build_parts(
    settings: Settings, targets: list[Target], http: httpx.AsyncClient, fence: Fence = always_leading
) -> Parts:
    prober = Prober(http, max_body_bytes=settings.max_body_bytes)
    cfg = settings.incidents
    limiter = RateLimiter(((cfg.webhook_per_2s, 2.0), (cfg.webhook_per_min, 60.0)))
    webhook = WebhookFallback(http, read_optional_secret(settings.discord.webhook_url), limiter)
    operator = RecoveryOperator(prober, settings.recovery)
    metrics = Metrics(t.name for t in targets)
    projects = ProjectWatch.build(http, targets)  # the same shared client, its own timeouts and rate limit
    guard = StoreGuard(None, metrics)
    return Parts(settings, targets, http, prober, operator, webhook, guard, metrics, projects, fence)


def build_ops(parts: Parts, sink: AlertSink, *, autostart_monitor: bool = True) -> Ops:
    monitor = Monitor(
        parts.settings,
        parts.targets,
        parts.prober,
        parts.operator,
        sink,
        guard=parts.guard,
        metrics=parts.metrics,
        projects=parts.projects,
        fence=parts.fence,
    )
    targets = {t.name: t for t in parts.targets}
    return Ops(
        parts.settings,
        targets,
        parts.http,
        parts.prober,
        parts.operator,
        monitor,
        parts.guard,
        autostart_monitor,
        projects=parts.projects,
    )


def build_console(
    settings: Settings,
    targets: list[Target],
    http: httpx.AsyncClient,
    out: TextIO | None = None,
    *,
    log_format: str = TEXT,
    fence: Fence = always_leading,
) -> Ops:
    parts = build_parts(settings, targets, http, fence)
    return build_ops(parts, ConsoleSink(parts.webhook, out, guard=parts.guard, log_format=log_format))


def build_bot(
    settings: Settings,
    targets: list[Target],
    http: httpx.AsyncClient,
    *,
    cogs: tuple[str, ...] = COGS,
    autostart_monitor: bool = True,
    fence: Fence = always_leading,
    **options: Any,
) -> PgrstOpsBot:
    """The bot, not started: tests and embedders run it in-process (`options` go to discord.py's client)."""
    parts = build_parts(settings, targets, http, fence)
    channels = Channels()  # the sink needs the bot's channel lookup, the bot needs the monitor: bound below
    sink = DiscordSink(
        channels,
        settings.discord.ops_channel_id,
        parts.webhook,
        parts.guard,
        settings.incidents.send_timeout_s,
        settings.own_alert_channels(),
        parts.metrics,
    )
    ops = build_ops(parts, sink, autostart_monitor=autostart_monitor)
    bot = PgrstOpsBot(ops, sink, cogs=cogs, **options)
    channels.bind(bot)
    return bot


# -- the /metrics, /healthz and /readyz listener ---------------------------------------------------
async def store_unready(guard: StoreGuard) -> str | None:
    """Why the incident store is not usable now (a real round trip to it), or None."""
    if guard.store is None:
        return guard.error or "incident store not open"
    await guard(lambda s: s.outbox_count(unsent_only=True))
    return f"incident store: {guard.error}" if guard.error else None


def console_readiness(ops: Ops) -> Readiness:
    return lambda: store_unready(ops.guard)


def bot_readiness(bot: PgrstOpsBot) -> Readiness:
    async def unready() -> str | None:
        ws = bot.ws
        if bot.is_closed() or not bot.is_ready() or ws is None or not ws.open:
            return "not connected to the Discord gateway"
        return await store_unready(bot.services.guard)

    return unready


def leased(ready: Readiness, lease: LeaderLease | None) -> Readiness:
    """With replicas: a trusted leader is ready as the bot is; a standby while the store's database answers."""
    if lease is None:
        return ready

    async def unready() -> str | None:
        return await ready() if lease.role is Role.LEADER and lease.leading() else lease.unready()

    return unready


@contextlib.asynccontextmanager
async def serving(
    settings: Settings, metrics: Metrics, ready: Readiness, lease: LeaderLease | None = None
) -> AsyncIterator[Endpoints | None]:
    """The listener for the run (None when the config has no `metrics` section); stopped on the way out."""
    cfg = settings.metrics
    if cfg is None:
        yield None
        return
    endpoints = Endpoints(metrics, leased(ready, lease), (lambda: lease.role.value) if lease is not None else None)
    try:
        await endpoints.start(cfg.host, cfg.port)
    except OSError as err:
        raise ConfigError(
            f"metrics: cannot listen on {cfg.host}:{cfg.port} ({err.strerror or err})", key="metrics"
        ) from None
    try:
        yield endpoints
    finally:
        await endpoints.stop()


def serve_bot(
    bot: PgrstOpsBot, lease: LeaderLease | None = None
) -> contextlib.AbstractAsyncContextManager[Endpoints | None]:
    return serving(bot.services.settings, bot.services.monitor.metrics, bot_readiness(bot), lease)


def serve_console(
    ops: Ops, lease: LeaderLease | None = None
) -> contextlib.AbstractAsyncContextManager[Endpoints | None]:
    return serving(ops.settings, ops.monitor.metrics, console_readiness(ops), lease)


async def run_console(ops: Ops, stop: asyncio.Event) -> None:
    """The first check of every environment at once (each verdict printed as it comes), what happens next, then
    the loops until `stop`."""
    await ops.open_store()
    monitor = ops.monitor
    sink = monitor.sink
    assert isinstance(sink, ConsoleSink)
    mon = ops.settings.monitor
    envs = list(ops.targets)
    stopped = asyncio.create_task(stop.wait())
    try:
        version = package_version()
        sink.say("start", start_line(version, envs, mon.interval_s), version=version, environments=envs)
        await monitor.restore()
        first = asyncio.create_task(monitor.check_all())
        await asyncio.wait({first, stopped}, return_when=asyncio.FIRST_COMPLETED)
        if not first.done():  # Ctrl-C during the first check: stop without waiting for a hung environment
            first.cancel()
            await asyncio.gather(first, return_exceptions=True)
            return
        sink.say(
            "schedule",
            schedule_line(mon.failure_threshold, mon.interval_s, mon.liveness_interval_s),
            failure_threshold=mon.failure_threshold,
            next_check_s=mon.interval_s,
        )
        monitor.start(checked=True)
        await stopped
    finally:
        stopped.cancel()
        await monitor.stop()
        await ops.close_store()


# -- replicas: the leader lease ---------------------------------------------------------------------
def leader_lease(settings: Settings) -> LeaderLease | None:
    """With a PostgreSQL store the replicas sharing it elect one leader; None with SQLite (one process acts)."""
    cfg = settings.incidents
    if cfg.store_dsn is None:
        return None
    dsn = read_optional_secret(cfg.store_dsn)
    if dsn is None:
        raise ConfigError(f"incidents.store: {cfg.store_dsn.describe()} is not set or empty", key="incidents.store")
    return LeaderLease(dsn, LeaseTiming(cfg.lease_s), cfg.leader_group)


Act = Callable[[asyncio.Event], Awaitable[int]]  # runs the bot (or the console) until the event is set


async def lead(lease: LeaderLease | None, metrics: Metrics, stop: asyncio.Event, act: Act) -> int:
    """Act until `stop`; with replicas, first wait as a standby for the lease, and stop once it is lost."""
    if lease is None:
        return await act(stop)
    metrics.watch_leader(lease.leading)
    try:
        log.info("standby: waiting for the leader lease (%s; lease_s %g)", lease.describe(), lease.timing.lease_s)
        if not await lease.acquire(stop):
            return 0  # stopped while a standby
        until = asyncio.Event()
        holding = asyncio.create_task(stop_when_lost(lease, stop, until), name="lease")
        try:
            code = await act(until)
        finally:
            holding.cancel()
            await asyncio.gather(holding, return_exceptions=True)
        if lease.lost.is_set():
            log.error(
                "exiting with code %d: the leader lease is lost (%s); restarted, this replica waits as a standby",
                LOST_LEASE,
                lease.state.lost_reason,
            )
            return LOST_LEASE
        return code
    finally:
        await lease.close()


async def stop_when_lost(lease: LeaderLease, stop: asyncio.Event, until: asyncio.Event) -> None:
    """Keep confirming the lease; `until` is set on `stop` or as soon as the lease is lost."""
    tasks = {asyncio.create_task(lease.hold()), asyncio.create_task(stop.wait())}
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    finally:
        until.set()
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def run(settings: Settings, targets: list[Target], stop: asyncio.Event, *, log_format: str = TEXT) -> int:
    async with make_http_client(t.config for t in targets) as http:
        token = read_optional_secret(settings.discord.token)
        lease = leader_lease(settings)
        fence = lease.leading if lease is not None else always_leading
        if token is None:
            ops = build_console(settings, targets, http, log_format=log_format, fence=fence)

            async def console(until: asyncio.Event) -> int:
                await run_console(ops, until)
                return 0

            async with serve_console(ops, lease):
                return await lead(lease, ops.monitor.metrics, stop, console)
        settings.discord.require_guilds()
        secret = token.get_secret_value()
        bot = build_bot(settings, targets, http, fence=fence)
        async with serve_bot(bot, lease):
            return await lead(lease, bot.services.monitor.metrics, stop, lambda until: run_bot(bot, secret, until))


def config_error(exc: ConfigError) -> int:
    """One line on stderr, exit code 2: a configuration the bot will not run with."""
    sys.stderr.write(f"pgrst-ops: configuration error: {exc}\n")
    return 2


BOT_EPILOG = """\
Without a Discord token (discord.token, e.g. $DISCORD_TOKEN) this is the console monitor: verdicts and alerts on
stdout, the log on stderr; both plain text, or both JSON lines with --log-format json. Colour only on a
terminal, never with NO_COLOR set.

exit codes:
  0  stopped by SIGTERM or SIGINT (Ctrl-C), cleanly
  1  the Discord connection ended with an error
  2  usage or configuration error (one line on stderr naming the key), or Discord rejected the token
  3  a replica (PostgreSQL store) lost the leader lease and stopped acting; restarted, it is a standby

examples:
  python -m bot --config config.yaml --env dev   # monitor dev (console mode without a token)
  python -m bot --log-format json | jq .         # one JSON object per line, for a log shipper
"""


def build_parser() -> argparse.ArgumentParser:
    parser = program_parser(
        "python -m bot", "pgrst-ops Discord bot, or the console monitor when no Discord token is set.", BOT_EPILOG
    )
    parser.add_argument(
        "--env", action="append", metavar="NAME", help="environment to monitor (repeatable; default: all)"
    )
    parser.add_argument(
        "--log-format", choices=LOG_FORMATS, default="text", help="text (default) or JSON lines, on both streams"
    )
    parser.add_argument("--verbose", "-v", action="store_true", help="debug log lines")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    disable_created_metrics()  # no `_created` twin of every series: this process is ours
    setup_logging(args.log_format, logging.DEBUG if args.verbose else logging.INFO, sys.stderr)
    try:
        settings = load_settings(args.config)
        targets = resolve_targets(settings, args.env)
    except ConfigError as exc:
        return config_error(exc)

    async def runner() -> int:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()

        def on_signal(sig: signal.Signals) -> None:
            log.info("%s: stopping (in-flight actions get %g s)", sig.name, settings.discord.shutdown_grace_s)
            stop.set()

        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, on_signal, sig)
        try:
            return await run(settings, targets, stop, log_format=args.log_format)
        except ConfigError as exc:
            return config_error(exc)

    return asyncio.run(runner())
