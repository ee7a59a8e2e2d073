"""Console text: Discord message payloads and monitor events as plain text for terminals, files and pipes.

Whatever payload the builders make is rendered generically from its content, embeds and link buttons: Markdown
is removed (bold, italics, code, links become their text and address), Discord timestamps become one format
(`TIME_FORMAT`, UTC) and a time written twice in a row ("<t:…:R> (… UTC)") is shown once, mentions and
decorative emoji are dropped (only the status marks ✅ ❌ ⚠️ stay). Colour is an optional `Palette`: the caller
decides whether the stream may have it. Pure; imports nothing of the project but config types.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

# The one time format of everything the console writes (events, rendered timestamps, log lines).
TIME_FORMAT = "%Y-%m-%d %H:%M:%S UTC"


def format_time(ts: datetime) -> str:
    return ts.astimezone(UTC).strftime(TIME_FORMAT)


@dataclass(frozen=True)
class Palette:
    """ANSI colours, or none at all (`Palette.plain()`): redirected output and NO_COLOR get no escape codes."""

    red: str = "\033[31m"
    green: str = "\033[32m"
    yellow: str = "\033[33m"
    bold: str = "\033[1m"
    reset: str = "\033[0m"

    @staticmethod
    def plain() -> Palette:
        return Palette("", "", "", "", "")

    def paint(self, colour: str, text: str) -> str:
        return f"{colour}{text}{self.reset}" if colour else text


# Discord renders <t:1700000000:R> in the reader's time zone; a terminal shows it in the one format instead.
DISCORD_TIMESTAMP = re.compile(r"<t:(-?\d+)(?::[tTdDfFR])?>")
_TIME = r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC"
_TIME_TWICE = re.compile(rf"({_TIME})\s*\(\1\)")
_CODE_BLOCK = re.compile(r"```[\w+-]*\n?(.*?)```", re.S)
_INLINE_CODE = re.compile(r"`([^`\n]*)`")
_LINK = re.compile(r"\[([^\]\n]+)\]\(<?(\S+?)>?\)")
_ANGLE_URL = re.compile(r"<(https?://[^>\s]+)>")
_BOLD = re.compile(r"(\*\*|__)(.+?)\1", re.S)
_ITALIC = re.compile(r"(?<![\w*])([*_])(?=\S)(.+?)(?<=\S)\1(?![\w*])")
_STRIKE = re.compile(r"~~(.+?)~~", re.S)
_SPOILER = re.compile(r"\|\|(.+?)\|\|", re.S)
_LINE_MARKUP = re.compile(r"^(?:#{1,3} |-# |>>> |> )", re.M)
_MENTION = re.compile(r"<(?:@[!&]?|#)\d+>\s?")
_ESCAPED = re.compile(r"\\([*_`~|>#\\\[\]()-])")
# Runs of pictographs and dingbats (with variation selectors and joiners) and the space after them; the status
# marks ✅ ❌ ⚠️ in a run are kept, the rest is decoration.
_DECORATIVE = re.compile(r"[\U0001F000-\U0001FAFF\u2600-\u27BF\u2B00-\u2BFF\u231A\u231B\u23E9-\u23FA\uFE0F\u200D]+ ?")
_STATUS_MARKS = {"✅": "✅", "❌": "❌", "⚠": "⚠️"}


def _undecorate(match: re.Match[str]) -> str:
    marks = "".join(_STATUS_MARKS.get(ch, "") for ch in match.group(0))
    return f"{marks} " if marks and match.group(0).endswith(" ") else marks


def _time(match: re.Match[str]) -> str:
    return format_time(datetime.fromtimestamp(int(match.group(1)), UTC))


def plain(text: str) -> str:
    """Discord Markdown as plain text: what a terminal, a log file or grep should see."""
    if not text:
        return ""
    text = DISCORD_TIMESTAMP.sub(_time, text)
    text = _TIME_TWICE.sub(r"\1", text)
    text = _CODE_BLOCK.sub(lambda m: m.group(1).rstrip("\n"), text)
    text = _INLINE_CODE.sub(r"\1", text)
    text = _LINK.sub(lambda m: m.group(1) if m.group(1) == m.group(2) else f"{m.group(1)} ({m.group(2)})", text)
    text = _ANGLE_URL.sub(r"\1", text)
    text = _MENTION.sub("", text)
    text = _BOLD.sub(r"\2", text)
    text = _STRIKE.sub(r"\1", text)
    text = _SPOILER.sub(r"\1", text)
    text = _ITALIC.sub(r"\2", text)
    text = _LINE_MARKUP.sub("", text)
    text = _ESCAPED.sub(r"\1", text)
    text = _DECORATIVE.sub(_undecorate, text)
    return "\n".join(line.rstrip() for line in text.split("\n")).strip()


def _link_buttons(payload: dict[str, Any]) -> list[str]:
    """The link buttons of a payload's action rows (a button with a url); other buttons need Discord."""
    found = []
    for row in payload.get("components", []) or []:
        for item in row.get("components", []) if isinstance(row, dict) else []:
            if isinstance(item, dict) and item.get("url"):
                found.append(f"{plain(str(item.get('label') or 'Link'))}: {item['url']}")
    return found


def payload_text(payload: dict[str, Any]) -> str:
    """A plain-text rendering of a Discord message payload: content, then each embed's title, description, fields
    (a one-line value on the field's line, longer ones indented below it) and footer, then its link buttons."""
    parts = [plain(payload.get("content") or "")]
    for embed in payload.get("embeds", []) or []:
        parts.append(plain(embed.get("title") or ""))
        parts.append(plain(embed.get("description") or ""))
        for field in embed.get("fields", []) or []:
            name, value = plain(str(field.get("name", ""))), plain(str(field.get("value", "")))
            if "\n" in value or len(name) + len(value) > 100:
                parts.append(f"{name}:\n  " + value.replace("\n", "\n  "))
            else:
                parts.append(f"{name}: {value}")
        footer = embed.get("footer") or {}
        parts.append(plain(str(footer.get("text") or "")))
    parts += _link_buttons(payload)
    return "\n".join(p for p in parts if p)


# What a message kind looks like on the console: its label's colour.
_KIND_COLOUR = {"CRITICAL": "red", "UPDATE": "yellow", "INFO": "bold"}


def message_block(kind: str, env: str, payload: dict[str, Any], at: datetime, palette: Palette) -> str:
    """One message as the console shows it: a header line, then the payload's text indented by two spaces."""
    colour = getattr(palette, _KIND_COLOUR.get(kind, "bold"))
    header = f"{format_time(at)}  {palette.paint(colour, kind)}  {env}"
    body = payload_text(payload)
    return header + ("\n  " + body.replace("\n", "\n  ") if body else "")


def verdict_line(env: str, old: str | None, new: str, explanation: str, at: datetime, palette: Palette) -> str:
    """A verdict as it is first seen or as it changes: time, environment, mark, verdict, why."""
    healthy = new == "healthy"
    mark = palette.paint(palette.green if healthy else palette.red, f"{'✅' if healthy else '❌'} {new}")
    was = f" (was {old})" if old is not None else ""
    why = f": {plain(explanation)}" if explanation and not healthy else ""
    return f"{format_time(at)}  {env}  {mark}{was}{why}"


def start_line(version: str, envs: list[str], interval_s: float) -> str:
    return (
        f"pgrst-ops {version}: console mode (no Discord token). Checking {', '.join(envs)} now, "
        f"then every {interval_s:g} s. Ctrl-C stops."
    )


def plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def schedule_line(failure_threshold: int, interval_s: float, liveness_s: float = 0.0) -> str:
    """Said once the first check of every environment is in: what happens next, and when (the cheap liveness
    check between full probes, when it runs more often than they do)."""
    pace = f"next check in {interval_s:g} s"
    if 0 < liveness_s < interval_s:
        pace = f"liveness check every {liveness_s:g} s, full probe every {interval_s:g} s"
    return f"alerting after {plural(failure_threshold, 'consecutive failure')} ({pace})"


def json_event(event: str, at: datetime, **fields: Any) -> str:
    """One event as one JSON line (`--log-format json`): the same facts, for machines."""
    return json.dumps({"time": at.astimezone(UTC).isoformat(), "event": event, **fields}, ensure_ascii=False)
