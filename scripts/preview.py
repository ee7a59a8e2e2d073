"""`make preview`: every message kind, rendered by the real builders, on one HTML page that looks like a channel.

A reviewer sees the CRITICAL alert, its acknowledged and resolved forms, the notices and the command replies as
Discord would show them (colour bar, fields, buttons), without a Discord server. The inputs are the realistic
samples of scripts/message_samples.py; the page is written to build/preview.html (or the path given).
"""

from __future__ import annotations

import argparse
import html
import re
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from bot.core.incident import MonitorHealth
from bot.core.incidents import AFTER_RESTART, AUTO_RECOVERED, RECOVERED_BY_ITSELF
from bot.core.restart import Phase, Progress
from bot.messages import embeds, reload, replies
from bot.messages import incidents as notices
from bot.messages.alert import alert_buttons, build_critical_alert, build_resolved_alert, outgoing
from bot.messages.restart import with_restart
from scripts import command_samples
from scripts import message_samples as samples

ROLE_NAMES = {"77": "oncall-prod"}


@dataclass
class Shown:
    """One message as the channel shows it: who sent it, the payload, and its buttons (label, style, disabled)."""

    title: str
    payload: dict[str, Any]
    buttons: list[tuple[str, str, bool]] = field(default_factory=list)
    note: str = ""


def alert_button_row(payload: dict[str, Any], restart_url: str | None, *, resolved: bool = False) -> list[Any]:
    """The buttons bot.chat.views.alert_view puts under an alert, as plain (label, style, disabled)."""
    if resolved:
        return []
    buttons = alert_buttons(payload)
    row = [("Acknowledged" if buttons.acknowledged else "Acknowledge", "primary", buttons.acknowledged)]
    row.append(("Silence 1h", "secondary", False))
    if buttons.retry:
        row.append(("Retry reload", "secondary", False))
    if buttons.restart:
        row.append(("Restarting…" if buttons.restarting else "Restart project", "danger", buttons.restarting))
    elif restart_url:
        row.append(("Restart project ↗", "link", False))
    return row


def alert_messages() -> Iterator[Shown]:
    env = samples.env_config()
    restart = str(env.restart_url)
    since = samples.AT - timedelta(minutes=3)
    first: dict[str, Any] | None = None
    for name, inputs in samples.scenarios().items():
        payload = build_critical_alert(
            "prod",
            env,
            inputs["report"],
            result=inputs["result"],
            diagnosis=inputs["diagnosis"],
            since=since,
            alert_role_id=77,
        )
        first = first or payload
        yield Shown(f"CRITICAL: {name}", payload, alert_button_row(payload, restart))
    stale = build_critical_alert("prod", env, samples.stale(), since=since, alert_role_id=77)
    yield Shown("CRITICAL: stale cache a reload can fix (auto-recovery off)", stale, alert_button_row(stale, restart))
    assert first is not None
    acked = notices.acknowledged_payload(first, "alice", samples.AT + timedelta(minutes=2))
    yield Shown("CRITICAL, acknowledged", acked, alert_button_row(acked, restart))
    yield Shown(
        "Reminder (a reply to the alert)", notices.reminder_line("prod", since, samples.AT + timedelta(minutes=30), "x")
    )
    resolved, line = build_resolved_alert(
        "prod", acked, since, samples.AT + timedelta(minutes=9), resolution=RECOVERED_BY_ITSELF, acknowledged_by="alice"
    )
    yield Shown("The alert, edited when resolved", resolved, alert_button_row(resolved, restart, resolved=True))
    yield Shown("The one resolved line", line)
    _, fixed_line = build_resolved_alert(
        "prod", stale, since, samples.AT + timedelta(seconds=40), resolution=AUTO_RECOVERED
    )
    yield Shown("Resolved by a reload: the line", fixed_line)
    deaf = samples.no_listener_diagnosis()
    with_token = build_critical_alert(
        "prod",
        samples.env_config(project_token=True),
        deaf.report,
        result=samples.escalated(samples.stale(), deaf, refused=True),
        diagnosis=deaf,
        since=since,
        alert_role_id=77,
    )
    yield Shown("CRITICAL with a project token: Restart is a button", with_token, alert_button_row(with_token, restart))
    reason = "stale, nobody listens"
    going = with_restart(with_token, Progress(Phase.COMING_UP, 84, "COMING_UP"), "alice", reason)
    yield Shown("The alert following the restart", going, alert_button_row(going, restart))
    restarted, restarted_line = build_resolved_alert(
        "prod",
        going,
        since,
        samples.AT + timedelta(minutes=6),
        resolution=AFTER_RESTART,
        resolution_detail="healthy 1 min 52 s after the restart by alice",
    )
    yield Shown("Resolved after the restart", restarted, alert_button_row(restarted, restart, resolved=True))
    yield Shown("Resolved after the restart: the line", restarted_line)
    flapping = notices.flapping_alert("prod", 6, 900, samples.AT, 77)
    yield Shown("FLAPPING", flapping, alert_button_row(flapping, restart))


def notice_messages() -> Iterator[Shown]:
    at = samples.AT
    yield Shown(
        "Network lost (instead of one CRITICAL per environment)", notices.network_lost_line(["prod", "dev"], at)
    )
    yield Shown("Network back", notices.network_back_line(at, at + timedelta(minutes=4)))
    yield Shown("Silenced", notices.silenced_line("prod", at + timedelta(hours=1), "planned migration", "alice"))
    yield Shown("Silence over", notices.silence_expired_line("prod", "planned migration", "alice", still_down=False))
    yield Shown("Unsilenced", notices.unsilenced_line("prod", "alice", still_down=True))
    yield Shown("Maintenance over", notices.maintenance_over_line("prod", still_down=False))


def embeds_message(embeds: list[dict[str, Any]]) -> dict[str, Any]:
    return {"embeds": embeds, "allowed_mentions": {"parse": []}}


def command_messages() -> Iterator[Shown]:
    c = command_samples
    four = [c.pgrst002_report("prod"), c.healthy_report("staging"), c.healthy_report("dev"), c.healthy_report("qa")]
    diagnosed = {"prod": c.pgrst002_diagnosis("prod")}
    recheck = [("Re-check", "secondary", False)]
    yield Shown("/health, 4 environments", embeds_message(embeds.health_embeds(four, diagnosed)), recheck)
    many = [c.pgrst002_report("prod"), c.stale_report("dev")] + [c.healthy_report(f"shop-{i:02d}") for i in range(28)]
    yield Shown("/health, 30 environments", embeds_message(embeds.health_embeds(many, diagnosed)), recheck)
    states = [c.unhealthy_state("prod"), c.healthy_state("staging"), c.healthy_state("dev"), c.healthy_state("qa")]
    status = embeds.status_embed(states, MonitorHealth(), monitor_alive=True, reloads_in_window={"prod": 1})
    yield Shown("/status", embeds_message([status]))
    for title, result in (
        ("/reload that recovers", c.recovered_reload("dev")),
        ("/reload refused by the pre-flight", c.refused_reload("dev")),
        ("/reload that escalates", c.escalated_reload("prod")),
    ):
        lines = replies.reload_lines(result.steps, result)
        yield Shown(title, embeds_message([reload.reload_embed(result.env, lines, result=result, actor=result.actor)]))
    running = c.recovered_reload("dev")
    lines = replies.reload_lines(running.steps[:-2])
    yield Shown(
        "/reload while it runs", embeds_message([reload.reload_embed("dev", lines, result=None, actor=running.actor)])
    )


SECTIONS: list[tuple[str, Callable[[], Iterator[Shown]]]] = [
    ("Alerts, from CRITICAL to resolved", alert_messages),
    ("Notices", notice_messages),
    ("Commands", command_messages),
]


# -- rendering ---------------------------------------------------------------------------------------------------
def discord_time(match: re.Match[str]) -> str:
    at = datetime.fromtimestamp(int(match["ts"]), UTC)
    style = match["style"] or "f"
    if style == "R":
        delta = int((samples.AT - at).total_seconds())
        text = f"{abs(delta) // 60} minutes ago" if delta >= 0 else f"in {abs(delta) // 60} minutes"
    elif style == "t":
        text = f"{at:%H:%M}"
    else:
        text = f"{at:%d %B %Y %H:%M}"
    return f'<span class="ts">{text}</span>'


def markdown(text: str) -> str:
    """The little Markdown Discord renders in these messages: bold, code, role mentions, timestamps, lists."""
    out = html.escape(text, quote=False)
    out = re.sub(r"&lt;t:(?P<ts>\d+)(?::(?P<style>[tTdDfFR]))?&gt;", discord_time, out)
    out = re.sub(r"&lt;@&amp;(\d+)&gt;", lambda m: f'<span class="mention">@{ROLE_NAMES.get(m[1], "role")}</span>', out)
    out = re.sub(r"`([^`]+)`", r"<code>\1</code>", out)
    out = re.sub(r"\*\*([^*]+)\*\*", r"<b>\1</b>", out)
    return out.replace("\n", "<br>")


def render_embed(embed: dict[str, Any]) -> str:
    colour = f"#{int(embed.get('color', 0x4F545C)):06x}"
    parts = [f'<div class="embed" style="border-left-color:{colour}">']
    if embed.get("title"):
        parts.append(f'<div class="title">{markdown(embed["title"])}</div>')
    if embed.get("description"):
        parts.append(f'<div class="desc">{markdown(embed["description"])}</div>')
    fields = embed.get("fields") or []
    if fields:
        parts.append('<div class="fields">')
        for f in fields:
            wide = "" if f.get("inline") else " wide"
            parts.append(
                f'<div class="field{wide}"><div class="fname">{markdown(f["name"])}</div>'
                f'<div class="fvalue">{markdown(f["value"])}</div></div>'
            )
        parts.append("</div>")
    if embed.get("footer"):
        parts.append(f'<div class="footer">{html.escape(embed["footer"].get("text", ""))}</div>')
    parts.append("</div>")
    return "".join(parts)


def size_note(payload: dict[str, Any]) -> str:
    from bot.messages.alert import payload_chars

    embeds = payload.get("embeds", [])
    fields = sum(len(e.get("fields") or []) for e in embeds)
    return f"{payload_chars(payload)} characters · {len(embeds)} embed(s) · {fields} field(s)"


def render_message(shown: Shown) -> str:
    payload = outgoing(shown.payload)
    parts = [
        '<div class="msg"><div class="avatar">P</div><div class="body">',
        f'<div class="kind">{html.escape(shown.title)} <span class="size">{size_note(payload)}</span></div>',
        '<div class="head"><span class="name">pgrst-ops</span><span class="bot">APP</span>'
        f'<span class="when">Today at {samples.AT:%H:%M}</span></div>',
    ]
    if payload.get("content"):
        parts.append(f'<div class="content">{markdown(payload["content"])}</div>')
    parts += [render_embed(e) for e in payload.get("embeds", [])]
    if shown.buttons:
        parts.append('<div class="buttons">')
        for label, style, disabled in shown.buttons:
            parts.append(f'<span class="btn {style}{" disabled" if disabled else ""}">{html.escape(label)}</span>')
        parts.append("</div>")
    if shown.note:
        parts.append(f'<div class="note">{html.escape(shown.note)}</div>')
    parts.append("</div></div>")
    return "".join(parts)


STYLE = """
body{background:#313338;color:#dbdee1;font:15px/1.375 "gg sans","Noto Sans",Helvetica,Arial,sans-serif;margin:0}
h1{font-size:20px;padding:16px 24px;margin:0;border-bottom:1px solid #232428;color:#f2f3f5}
h2{font-size:12px;text-transform:uppercase;color:#949ba4;margin:24px 24px 4px}
.msg{display:flex;padding:8px 24px 12px;gap:16px}.msg:hover{background:#2e3035}
.avatar{width:40px;height:40px;border-radius:50%;background:#5865f2;color:#fff;display:flex;align-items:center;
justify-content:center;font-weight:700;flex:none}
.body{min-width:0;max-width:560px}.kind{font-size:12px;color:#949ba4}.size{color:#6d6f78;margin-left:6px}
.name{color:#f2f3f5;font-weight:600}.bot{background:#5865f2;color:#fff;font-size:10px;border-radius:3px;
padding:0 4px;margin:0 6px}.when{font-size:12px;color:#949ba4}
.content{white-space:normal;word-wrap:break-word}.mention{background:#3c4270;color:#c9cdfb;border-radius:3px;
padding:0 2px}.ts{background:#3f4147;border-radius:3px;padding:0 2px}
code{background:#2b2d31;border:1px solid #1e1f22;border-radius:4px;padding:0 3px;font-size:85%}
.embed{background:#2b2d31;border-left:4px solid;border-radius:4px;padding:8px 16px 16px 12px;margin-top:4px}
.title{font-weight:600;color:#f2f3f5;margin-top:8px}.desc{margin-top:8px;font-size:14px}
.fields{display:grid;grid-template-columns:repeat(3,1fr);gap:8px;margin-top:8px}.field{font-size:14px}
.field.wide{grid-column:1/-1}.fname{font-weight:600;color:#f2f3f5}.footer{font-size:12px;margin-top:8px;color:#b5bac1}
.buttons{margin-top:8px;display:flex;gap:8px;flex-wrap:wrap}.btn{border-radius:3px;padding:2px 16px;font-size:14px;
line-height:28px;color:#fff}.btn.primary{background:#5865f2}.btn.secondary{background:#4e5058}
.btn.link{background:#4e5058}.btn.danger{background:#da373c}.btn.disabled{opacity:.5}.note{font-size:12px;color:#949ba4;margin-top:4px}
"""


def render_page() -> str:
    sections = []
    for heading, build in SECTIONS:
        sections.append(f"<h2>{html.escape(heading)}</h2>")
        sections += [render_message(shown) for shown in build()]
    return (
        '<!doctype html><html><head><meta charset="utf-8"><title>pgrst-ops messages</title>'
        f"<style>{STYLE}</style></head><body><h1># ops-alerts · every pgrst-ops message</h1>"
        + "".join(sections)
        + "</body></html>\n"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("output", nargs="?", default="build/preview.html", help="where to write the page")
    args = parser.parse_args(argv)
    out = Path(args.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(render_page(), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size // 1024} KB): open it in a browser", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
