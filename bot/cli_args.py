"""The command line's parsers: `pgrst-ops` (check, fix, drift, restart) and what `python -m bot` shares with it.

Only the standard library, so `--help`, `--version` and a usage error start in a few tens of milliseconds.
"""

from __future__ import annotations

import argparse
import re
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

CLI_EPILOG = """\
exit codes:
  0  healthy / recovered / in sync
  1  unhealthy / escalated / drift found
  2  usage or configuration error (one line on stderr, or {"error", "key"} with --json)

examples:
  pgrst-ops check --json > health.json             # after a migration in CI: fail the job unless all are healthy
  pgrst-ops fix --env prod --retries 10 --delay 1  # reload the cache if that can help, else escalate
"""


def package_version() -> str:
    """The installed package's version (pyproject.toml), the one --version and the start line show."""
    import importlib.metadata  # ~20 ms, needed only for --version and the bot's start line

    try:
        return importlib.metadata.version("pgrst-ops")
    except importlib.metadata.PackageNotFoundError:  # run from a source tree that was never installed
        from bot import __version__

        return __version__


class _VersionAction(argparse.Action):
    """--version, with the version read only when it is asked for (importlib.metadata costs ~20 ms per run)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS, **kwargs: Any) -> None:
        kwargs.setdefault("help", "show program's version number and exit")
        super().__init__(option_strings, dest, nargs=0, default=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser: argparse.ArgumentParser, *_: object) -> NoReturn:
        sys.stdout.write(f"pgrst-ops {package_version()}\n")  # stdout, as argparse's own action writes it
        parser.exit()


def program_parser(
    prog: str, description: str, epilog: str, kind: type[argparse.ArgumentParser] = argparse.ArgumentParser
) -> argparse.ArgumentParser:
    """What both entry points (`pgrst-ops`, `python -m bot`) share: the epilog as written, --version, --config."""
    parser = kind(
        prog=prog, description=description, epilog=epilog, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--version", action=_VersionAction)
    parser.add_argument("--config", help="config file (default: $PGRST_OPS_CONFIG, else ./config.yaml)")
    return parser


def build_parser() -> argparse.ArgumentParser:
    parser = program_parser(
        "pgrst-ops", "Probe and recover PostgREST schema caches (Supabase REST).", CLI_EPILOG, kind=_Parser
    )
    sub = parser.add_subparsers(dest="command", required=True)
    check = sub.add_parser("check", help="probe environments; exit 0 only if all are healthy")
    check.add_argument("--env", action="append", metavar="NAME", help="environment (repeatable; default: all)")
    check.add_argument("--json", action="store_true", help="print one JSON document")
    check.add_argument("--verbose", "-v", action="store_true", help="show URLs, codes and server versions")
    drift = sub.add_parser(
        "drift", help="compare the database catalog with what PostgREST serves; exit 0 only if in sync"
    )
    drift.add_argument("--env", action="append", metavar="NAME", help="environment (repeatable; default: all)")
    drift.add_argument("--json", action="store_true", help="print one JSON document")
    drift.add_argument(
        "--per-object", action="store_true", help="skip the OpenAPI root: check every object with its own request"
    )
    drift.add_argument("--verbose", "-v", action="store_true")
    fix = sub.add_parser("fix", help="reload the schema cache if needed; escalate when that cannot help")
    fix.add_argument("--env", required=True, metavar="NAME", help="environment to recover")
    fix.add_argument("--retries", type=int, metavar="N", help="re-check budget: N x delay seconds")
    fix.add_argument("--delay", type=float, metavar="S", help="seconds per retry in the budget")
    fix.add_argument("--json", action="store_true", help="print one JSON document")
    fix.add_argument("--no-alert", action="store_true", help="do not post the CRITICAL alert on escalation")
    fix.add_argument(
        "--force",
        action="store_true",
        help="send the NOTIFY even if the pre-flight check finds it would break the cache or not be heard",
    )
    fix.add_argument("--verbose", "-v", action="store_true")
    restart = sub.add_parser(
        "restart", help="restart the environment's Supabase project and follow it until PostgREST is healthy"
    )
    restart.add_argument("--env", required=True, metavar="NAME", help="environment whose project to restart")
    restart.add_argument("--yes", action="store_true", help="confirm: required for a protected environment")
    restart.add_argument("--reason", default="pgrst-ops restart (CLI)", help="why, for the log (default: CLI)")
    restart.add_argument("--json", action="store_true", help="print one JSON document at the end")
    restart.add_argument("--verbose", "-v", action="store_true")
    return parser


class UsageError(Exception):
    """A command line argparse refused; `key` is the option concerned (e.g. --env), when there is one."""

    def __init__(self, message: str, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


class _Parser(argparse.ArgumentParser):
    """Raises UsageError instead of printing and exiting, so main can answer in the format asked for."""

    def error(self, message: str) -> NoReturn:
        option = re.search(r"(--[A-Za-z][\w-]*)", message)
        raise UsageError(message, option.group(1) if option else None)
