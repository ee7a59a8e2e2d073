"""`pgrst-ops check`, `fix`, `drift` and `restart`: the runbook's health probe and recovery operator for CI and
people, the drift check, and a Supabase project's restart.

Exit codes: 0 healthy / recovered, 1 unhealthy / escalated, 2 usage or configuration error.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import gc
import importlib
import json
import logging
import os
import sys
import threading
import types
from collections.abc import Sequence
from typing import TYPE_CHECKING, NoReturn, TextIO, cast

# Everything else is imported by the command that needs it, so `check` loads no asyncpg unless it diagnoses,
# `--help` no pydantic, and no command the store, the webhook or the drift code it does not use (start-up
# is part of every run's wall time: bench/README.md "Start-up"). The CLI never imports discord.
if TYPE_CHECKING:
    import httpx

    from bot.config import RecoveryConfig, Settings, Target
    from bot.core.recovery import RecoveryResult
    from bot.core.schema_version import SchemaVersionReport

EXIT_OK, EXIT_UNHEALTHY, EXIT_USAGE = 0, 1, 2

from bot.cli_args import UsageError, build_parser  # noqa: E402 - stdlib only, after the TYPE_CHECKING block


def write_json(out: TextIO, doc: object, *, indent: int | None = 2) -> None:
    """One JSON document and a newline, in one write. json.dump writes every token on its own: one system call
    each when stdout is unbuffered (PYTHONUNBUFFERED, as in the image), ~560 for a `fix` report (2.3 ms instead
    of 0.2 to a pipe); and the secret scrubber sees the whole document at once."""
    out.write(json.dumps(doc, indent=indent, ensure_ascii=False) + "\n")


def with_optional_dsn(target: Target) -> Target:
    """`check` needs no DSN; when one is set anyway, use it to diagnose what the probe found."""
    from bot.config import read_optional_secret

    dsn = read_optional_secret(target.config.database_dsn)
    return dataclasses.replace(target, secrets=dataclasses.replace(target.secrets, database_dsn=dsn))


async def run_check(settings: Settings, targets: list[Target], *, as_json: bool, verbose: bool, out: TextIO) -> int:
    from bot.messages.cli_text import render_report, version_line
    from bot.ops.check import check_environments
    from bot.postgrest.probe import Prober
    from bot.postgrest.requests import make_http_client
    from bot.supabase.watch import ProjectWatch

    rec = settings.recovery
    targets = [with_optional_dsn(t) for t in targets]  # secrets read once, for diagnosis and the version guard
    async with make_http_client(t.config for t in targets) as client:
        prober = Prober(client, max_body_bytes=settings.max_body_bytes)
        checked = await check_environments(prober, targets, rec, ProjectWatch.build(client, targets))
    reports = [c.report for c in checked]
    diagnoses = {c.report.env: c.diagnosis for c in checked if c.diagnosis is not None}
    versions = await schema_versions(targets, rec)
    if as_json:
        envs = []
        for r in reports:
            doc = r.to_json()
            doc["diagnosis"] = diagnoses[r.env].to_json() if r.env in diagnoses else None
            version = versions.get(r.env)
            doc["schema_version"] = version.to_json() if version else None
            envs.append(doc)
        write_json(out, {"healthy": all(r.healthy for r in reports), "environments": envs})
    else:
        text = []
        for r in reports:
            block = render_report(r, verbose=verbose, diagnosis=diagnoses.get(r.env))
            if r.env in versions:
                block += "\n" + version_line(versions[r.env])
            text.append(block)
        out.write("\n\n".join(text) + "\n")
    return EXIT_OK if all(r.healthy for r in reports) else EXIT_UNHEALTHY


async def schema_versions(targets: list[Target], rec: RecoveryConfig) -> dict[str, SchemaVersionReport]:
    """The schema version guard of each environment that has one (and a DSN to read the database's)."""
    guarded = [t for t in targets if t.config.schema_version is not None]
    if not guarded:
        return {}
    import asyncio

    from bot.postgres.schema_version import check_target_schema_version  # asyncpg: only with a guard to check

    found = await asyncio.gather(
        *(
            check_target_schema_version(
                t, os.environ, connect_timeout=rec.db_connect_timeout_s, command_timeout=rec.db_command_timeout_s
            )
            for t in guarded
        )
    )
    return {t.name: v for t, v in zip(guarded, found, strict=True) if v is not None}


async def run_drift(settings: Settings, targets: list[Target], *, as_json: bool, per_object: bool, out: TextIO) -> int:
    import asyncio

    from bot.delivery.guard import StoreGuard
    from bot.messages.cli_text import render_drift
    from bot.ops.drift import check_drift
    from bot.postgrest.requests import make_http_client
    from bot.store import open_store, store_in_use

    rec = settings.recovery
    # The bot's store (PostgreSQL, or its SQLite file when that exists here) remembers each run's objects.
    memory = StoreGuard(await open_store(settings.incidents) if await store_in_use(settings.incidents) else None)
    try:
        async with make_http_client(t.config for t in targets) as client:
            reports = await asyncio.gather(
                *(
                    check_drift(
                        client,
                        with_optional_dsn(t),
                        max_body_bytes=settings.monitor.drift_max_body_bytes,
                        connect_timeout=rec.db_connect_timeout_s,
                        command_timeout=rec.db_command_timeout_s,
                        method="probe" if per_object else "auto",
                        memory=memory,
                    )
                    for t in targets
                )
            )
    finally:
        if memory.store is not None:
            await memory.store.close()
    if as_json:
        write_json(out, {"in_sync": all(r.in_sync for r in reports), "environments": [r.to_json() for r in reports]})
    else:
        for r in reports:
            out.write(render_drift(r))
    return EXIT_OK if all(r.in_sync for r in reports) else EXIT_UNHEALTHY


async def run_fix(
    settings: Settings,
    target: Target,
    *,
    retries: int | None,
    delay: float | None,
    as_json: bool,
    alert: bool,
    verbose: bool,
    out: TextIO,
    force: bool = False,
) -> int:
    import asyncio

    from bot.core.recovery import Outcome, RecoveryStep, StepKind
    from bot.messages.cli_text import print_outcome, step_printer
    from bot.ops.recovery import RecoveryOperator
    from bot.postgrest.probe import Prober
    from bot.postgrest.requests import make_http_client

    async with make_http_client([target.config]) as client:
        prober = Prober(client, max_body_bytes=settings.max_body_bytes)
        operator = RecoveryOperator(prober, settings.recovery)
        if not as_json:
            out.write(
                f"{'=' * 70}\n  OPERATOR-GRADE SCHEMA CACHE RECOVERY\n{'=' * 70}\n\n  Environment: {target.name.upper()}\n"
            )
        printer = None if as_json else step_printer(out, verbose)
        # Without the bot's store on this machine (a CI runner) the run is not logged, and the store's code
        # is never imported. With it, PostgREST reloads after the NOTIFY (70 ms at 20 tables, seconds at
        # thousands) while this process mostly waits: the incident log's code (the store, 30-80 ms to import)
        # loads in that wait, in a thread, instead of after the recovery where it adds to the run's wall.
        logged = await asyncio.to_thread(settings.incidents.used_by_one_off_commands)
        loading = threading.Thread(target=importlib.import_module, args=("bot.ops.incident_log",))

        def on_step(step: RecoveryStep) -> None:
            if printer is not None:
                printer(step)
            if step.kind is StepKind.NOTIFY and logged and loading.ident is None:  # one NOTIFY per recovery
                loading.start()

        actor = "cli --force" if force else "cli"
        result = await operator.recover(
            target, retries=retries, delay_s=delay, actor=actor, on_step=on_step, force=force
        )
        alert_status = None
        if result.outcome is Outcome.ESCALATED and alert:
            alert_status = await _send_alert(client, settings, target, result)
        incident = None
        if logged:
            if loading.is_alive():
                loading.join()
            from bot.ops.incident_log import record_incident

            incident = await record_incident(settings, result)
    if as_json:
        doc = result.to_json()
        doc["alert"] = alert_status
        doc["incident"] = incident
        write_json(out, doc)
    else:
        print_outcome(out, target, result, alert_status)
        if incident:
            out.write(f"\n  Incident log: {incident}\n")
    return EXIT_OK if result.ok else EXIT_UNHEALTHY


async def run_restart(settings: Settings, target: Target, *, reason: str, as_json: bool, out: TextIO) -> int:
    """Restart the project once, print each phase, exit 0 once PostgREST is healthy again (1 otherwise)."""
    from bot.core.restart import Phase, Progress
    from bot.messages.restart import cli_progress_line
    from bot.ops.incident_log import record_audit
    from bot.ops.restart import restart_once

    def said(step: Progress) -> None:
        if not as_json:
            out.write(cli_progress_line(target.name, step) + "\n")
            out.flush()

    progress, outcome = await restart_once(settings, target, reason, said)
    audit = await record_audit(settings, "cli", "restart", target.name, f"{outcome} (reason: {reason[:200]})")
    if as_json:
        doc = {"env": target.name, "phase": str(progress.phase), "elapsed_s": round(progress.elapsed_s, 1)}
        doc |= {"status": progress.status, "detail": progress.detail, "audit": audit}
        write_json(out, doc, indent=None)
    else:
        if progress.phase is Phase.FAILED:
            out.write(cli_progress_line(target.name, progress) + "\n")
        if audit:
            out.write(f"{target.name}: incident log: {audit}\n")
    return EXIT_OK if progress.phase is Phase.HEALTHY else EXIT_UNHEALTHY


async def _send_alert(client: httpx.AsyncClient, settings: Settings, target: Target, result: RecoveryResult) -> str:
    from bot.config import read_optional_secret
    from bot.delivery.webhook import post_webhook
    from bot.messages.alert import build_critical_alert

    ref = settings.discord.webhook_url
    url = read_optional_secret(ref)
    if url is None:
        where = f" ({ref.describe()} is not set)" if ref else ""
        return f"not sent: no Discord webhook configured{where}"
    payload = build_critical_alert(
        target.name,
        target.config,
        result.report_after,
        result=result,
        alert_role_id=settings.alert_route(target.name).mention_id,
    )
    sent = await post_webhook(client, url, payload)
    return "sent" if sent.ok else f"failed: {sent.detail}"


class _Scrubbed:
    """A text stream that never prints a secret (every value read from the config is scrubbed)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def write(self, text: str) -> int:
        from bot.redact import scrub  # pydantic: not for --help or a usage error

        return self.stream.write(scrub(text))

    def flush(self) -> None:
        self.stream.flush()


def _fail(message: str, key: str | None, *, as_json: bool, out: TextIO, err: TextIO, usage: str = "") -> int:
    """A usage or configuration error: one JSON document on stdout with --json (a pipeline's file is never
    empty), else one line on stderr. Exit 2 either way."""
    if as_json:
        out.write(json.dumps({"error": message, "key": key}, ensure_ascii=False) + "\n")
    else:
        err.write(f"{usage}pgrst-ops: {message}\n")
    return EXIT_USAGE


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None, err: TextIO | None = None) -> int:
    try:
        return _main(argv, out=out, err=err)
    except BrokenPipeError:
        # The reader went away (`check --json | head`): nothing more to say, and no traceback at exit either.
        with contextlib.suppress(OSError, ValueError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 1


def run() -> NoReturn:
    """The `pgrst-ops` console script and `python -m bot.cli`: main() in a process that ends with it.

    Two costs of a short run that main() itself must keep for callers in the same process (the tests): the
    garbage collector walking the ~40,000 objects start-up builds (config models, dataclasses; they live until
    exit) about 100 times, ~18 ms; and the interpreter's teardown freeing every module after the work is done,
    ~60 ms. So collections wait for 100,000 new objects (a long `fix` or `restart` still collects), and once
    main() has returned and every stream and log handler is flushed, the process leaves with os._exit.
    Everything main() does (the store's rows, the alert) is awaited before it returns.
    """
    gc.set_threshold(100_000, 10, 10)
    code = main()  # SystemExit (--help, --version) and errors take the interpreter's ordinary way out
    if any(t.is_alive() and not t.daemon for t in threading.enumerate() if t is not threading.main_thread()):
        sys.exit(code)  # a thread still working: the interpreter waits for it, as it always has
    atexit._run_exitfuncs()  # what the interpreter runs at exit: logging.shutdown flushes every handler
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except BrokenPipeError:  # the reader went away before the last bytes: as main() answers that
            code = code or 1
        except (OSError, ValueError):  # a stream closed under us: nothing more can be said on it
            pass
    os._exit(code)


def _without_pydantic_plugins() -> None:
    """pgrst-ops uses no pydantic plugin: looking for them reads every installed distribution's entry points
    when the first config model is built (3-13 ms here), and pydantic's plugin loader imports importlib.metadata
    (with email, zipfile and csv: ~20 ms of every start) before it reads PYDANTIC_DISABLE_PLUGINS. With every
    plugin off, the loader's answer is known: none. Set PYDANTIC_DISABLE_PLUGINS to a name list to keep them."""
    if os.environ.setdefault("PYDANTIC_DISABLE_PLUGINS", "__all__") in ("__all__", "1", "true"):
        loader = types.ModuleType("pydantic.plugin._loader")
        loader.get_plugins = tuple  # type: ignore[attr-defined] # what the real one returns with every plugin off
        sys.modules.setdefault("pydantic.plugin._loader", loader)


def _main(argv: Sequence[str] | None, *, out: TextIO | None, err: TextIO | None) -> int:
    out = cast(TextIO, _Scrubbed(out or sys.stdout))
    err = cast(TextIO, _Scrubbed(err or sys.stderr))
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        # asked for JSON? Read from the words themselves (argparse accepts any unambiguous prefix of --json)
        as_json = any(len(word) >= 3 and "--json".startswith(word) for word in argv)
        return _fail(f"usage error: {exc}", exc.key, as_json=as_json, out=out, err=err, usage=parser.format_usage())
    as_json = args.json
    # httpx imports its own command-line tool whenever click, rich and pygments happen to be installed (a dev
    # environment; the runtime lock has none of them): ~70 ms this CLI never uses. A None entry makes that
    # optional import fail as it does without them.
    sys.modules.setdefault("httpx._main", None)  # type: ignore[arg-type]
    _without_pydantic_plugins()
    import asyncio

    from bot.config import ConfigError, load_settings, resolve_targets
    from bot.redact import install_log_filter

    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=err)
    install_log_filter()
    try:
        settings = load_settings(args.config)
        if args.command in ("check", "drift", "restart"):  # a restart needs the project's token, not the DSN
            targets = resolve_targets(settings, [args.env] if args.command == "restart" else args.env, need_dsn=False)
        else:
            targets = resolve_targets(settings, [args.env])
    except ConfigError as exc:
        return _fail(f"configuration error: {exc}", exc.key, as_json=as_json, out=out, err=err)
    if args.command == "check":
        return asyncio.run(run_check(settings, targets, as_json=args.json, verbose=args.verbose, out=out))
    if args.command == "drift":
        return asyncio.run(run_drift(settings, targets, as_json=args.json, per_object=args.per_object, out=out))
    if args.command == "restart":
        target = targets[0]
        if target.config.supabase is None:
            key = f"environments.{target.name}.supabase"
            why = f"configuration error: {key}: not set; a restart needs the project ref and an access token"
            return _fail(why, key, as_json=as_json, out=out, err=err)
        if target.config.protected and not args.yes:
            why = f"usage error: {target.name} is protected: add --yes to restart its project"
            return _fail(why, "--yes", as_json=as_json, out=out, err=err)
        return asyncio.run(run_restart(settings, target, reason=args.reason, as_json=as_json, out=out))
    if args.retries is not None and args.retries < 1:
        return _fail("usage error: --retries must be >= 1", "--retries", as_json=as_json, out=out, err=err)
    if args.delay is not None and args.delay <= 0:
        return _fail("usage error: --delay must be > 0", "--delay", as_json=as_json, out=out, err=err)
    return asyncio.run(
        run_fix(
            settings,
            targets[0],
            retries=args.retries,
            delay=args.delay,
            as_json=args.json,
            alert=not args.no_alert,
            verbose=args.verbose,
            out=out,
            force=args.force,
        )
    )


if __name__ == "__main__":
    run()
