"""The app: one owner of the HTTP client, the operator and the monitor; the Discord bot or console mode.

This is the only module under bot/ that imports discord. `python -m bot` runs `main()`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys

import discord
import httpx

from bot import __version__
from bot.chat.bot import build_bot
from bot.config import ConfigError, Settings, Target, load_settings, read_optional_secret, resolve_targets
from bot.delivery.console import ConsoleSink
from bot.delivery.webhook import RateLimiter, WebhookFallback
from bot.ops.facade import Services, close_services_store, open_services_store
from bot.ops.monitor import Monitor
from bot.ops.recovery import RecoveryOperator
from bot.postgrest.probe import Prober, make_http_client
from bot.redact import install_log_filter

log = logging.getLogger("pgrst_ops")


def build_services(settings: Settings, targets: list[Target], http: httpx.AsyncClient) -> Services:
    prober = Prober(http, max_body_bytes=settings.max_body_bytes)
    cfg = settings.incidents
    limiter = RateLimiter(((cfg.webhook_per_2s, 2.0), (cfg.webhook_per_min, 60.0)))
    webhook = WebhookFallback(http, read_optional_secret(settings.discord.webhook_url), limiter)
    return Services(
        settings, {t.name: t for t in targets}, http, prober, RecoveryOperator(prober, settings.recovery), webhook
    )


async def run_console(services: Services, stop: asyncio.Event) -> None:
    await open_services_store(services)
    sink = ConsoleSink(services.webhook, guard=services.guard)
    monitor = Monitor(
        services.settings,
        list(services.targets.values()),
        services.prober,
        services.operator,
        sink,
        guard=services.guard,
    )
    services.monitor = monitor
    await monitor.restore()
    print(
        f"pgrst-ops {__version__}: no Discord token, console mode. Monitoring {', '.join(services.targets)} "
        f"every {services.settings.monitor.interval_s:g} s (Ctrl-C to stop).",
        flush=True,
    )
    monitor.start()
    try:
        await stop.wait()
    finally:
        await monitor.stop()
        await close_services_store(services)


async def run(settings: Settings, targets: list[Target], stop: asyncio.Event) -> int:
    async with make_http_client(t.config for t in targets) as http:
        services = build_services(settings, targets, http)
        token = read_optional_secret(settings.discord.token)
        if token is None:
            await run_console(services, stop)
            return 0
        settings.discord.require_guilds()
        bot = build_bot(services)
        async with bot:
            runner = asyncio.create_task(bot.start(token.get_secret_value()))
            stopper = asyncio.create_task(stop.wait())
            done, _ = await asyncio.wait({runner, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if runner in done:
                stopper.cancel()
                error = runner.exception()
                if isinstance(error, ConfigError):
                    return config_error(error)
                if isinstance(error, discord.LoginFailure):
                    log.error("Discord rejected the token (%s)", settings.discord.token.describe())
                    return 2
                if error is not None:
                    log.error("the bot stopped: %s", type(error).__name__)
                    return 1
            await bot.close()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await runner
    return 0


def config_error(exc: ConfigError) -> int:
    """One line on stderr, exit code 2: a configuration the bot will not run with."""
    sys.stderr.write(f"pgrst-ops: configuration error: {exc}\n")
    return 2


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bot", description="pgrst-ops Discord bot / console monitor")
    parser.add_argument("--config", help="config file (default: $PGRST_OPS_CONFIG, else ./config.yaml)")
    parser.add_argument(
        "--env", action="append", metavar="NAME", help="environment to monitor (repeatable; default: all)"
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    install_log_filter()  # no secret in any log line, whoever logs it
    logging.getLogger("discord").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
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
            return await run(settings, targets, stop)
        except ConfigError as exc:
            return config_error(exc)

    return asyncio.run(runner())
