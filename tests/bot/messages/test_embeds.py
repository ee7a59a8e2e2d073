"""/health, /status and /reload payloads from the real builders (pure: no Discord, no network): wording and
Discord's limits on realistic inputs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from bot.core.classify import CheckKind
from bot.core.incident import EnvState, MonitorHealth
from bot.core.recovery import StepKind
from bot.core.report import CheckResult, summarise
from bot.core.verdicts import Verdict
from bot.messages.alert import clip, embed_size
from bot.messages.embeds import health_embeds, status_embed
from bot.messages.reload import reload_embed
from bot.messages.replies import reload_lines, retry_outcome, with_status_extras
from scripts import command_samples as x


def check(kind: CheckKind, server: str | None, message: str | None = None) -> CheckResult:
    return CheckResult(
        name=str(kind),
        label=str(kind),
        kind=kind,
        method="GET",
        url="http://api/x",
        status=200,
        code=None,
        message=message,
        detail="200",
        retry_after=None,
        latency_ms=3.0,
        server=server,
        verdict=Verdict.HEALTHY,
        auth_limited=False,
    )


def state_with(server: str | None, *extra: CheckResult) -> EnvState:
    now = datetime.now(UTC)
    report = summarise("prod", [check(CheckKind.DATA, server), *extra], now, 4.0)
    return EnvState("prod", verdict=report.verdict, since=now, last_report=report)


def status_value(state: EnvState) -> str:
    embed = status_embed([state], MonitorHealth(), monitor_alive=True, reloads_in_window={})
    return str(embed["fields"][0]["value"])


def test_status_shows_the_postgrest_version_each_environment_reports():
    assert "· postgrest/14.1" in status_value(state_with("postgrest/14.1")).splitlines()[0]


def test_status_says_when_no_version_is_reported():
    assert "PostgREST version not reported" in status_value(state_with("cloudflare"))


def test_status_shows_the_admin_metrics_as_evidence_when_postgrest_has_them():
    metrics = check(CheckKind.METRICS, "postgrest/14.1", "schema cache loads 3 ok, 57 failed")
    assert "admin /metrics: schema cache loads 3 ok, 57 failed" in status_value(state_with("postgrest/14.1", metrics))
    assert "admin /metrics" not in status_value(state_with("postgrest/12.0.2", check(CheckKind.METRICS, None)))


# -- sizes and wording of /health, /status and /reload on realistic inputs (tests/bot/messages/realistic.py) --
# Any pictograph but the three status marks (and the variation selector that makes ⚠ an emoji).
DECORATIVE = re.compile("[\U0001f000-\U0001faff\u2300-\u23ff\u2600-\u26ff\u2700-\u27bf\u2b00-\u2bff]")
MARKS = {"✅", "❌", "⚠"}


def decorative(embed: dict) -> set[str]:
    return {c for c in DECORATIVE.findall(text_of(embed)) if c not in MARKS}


def text_of(embed: dict) -> str:
    """Every text a reader sees in the embed."""
    parts = [embed.get("title", ""), embed.get("description", ""), embed.get("footer", {}).get("text", "")]
    parts += [p for f in embed.get("fields", []) for p in (f["name"], f["value"])]
    return "\n".join(parts)


def assert_within_discord_limits(embeds: list[dict]) -> None:
    assert 1 <= len(embeds) <= 10
    assert sum(embed_size(e) for e in embeds) <= 6000
    for e in embeds:
        assert len(e["title"]) <= 256 and len(e.get("description", "")) <= 4096
        assert len(e.get("fields", [])) <= 25
        assert all(len(f["name"]) <= 256 and 0 < len(f["value"]) <= 1024 for f in e.get("fields", []))


def four_environments() -> list[dict]:
    reports = [x.healthy_report("staging", 12), x.pgrst002_report("prod"), x.healthy_report("dev", 9)]
    reports.append(x.healthy_report("qa", 31))
    return health_embeds(reports, {"prod": x.pgrst002_diagnosis("prod")})


def test_health_of_four_environments_puts_the_unhealthy_one_first_in_at_most_1500_characters():
    (embed,) = four_environments()
    assert embed_size(embed) <= 1500
    assert embed["title"] == "PostgREST health: 1 unhealthy, 3 healthy"
    (prod,) = embed["fields"]  # the unhealthy one has the only block; it comes before the healthy lines
    assert prod["name"] == "❌ PROD — schema cache cannot load (PGRST002)"
    # healthy ones: one line each, in the config's order, with the latency and no check list
    assert embed["description"].splitlines() == [
        "✅ **STAGING** healthy · 30 ms",
        "✅ **DEV** healthy · 22 ms",
        "✅ **QA** healthy · 78 ms",
    ]
    assert "Admin /live" not in str(embed)  # a passing check is only counted
    assert "✅ 1 other check passes" in prod["value"]
    assert "❌ Root (/), Data (public.judgments), Cache (public.judgments): `503 PGRST002`" in prod["value"]
    text = text_of(embed)
    assert text.count(x.ROLE_SETTING.evidence) == 1 and text.count(x.ROLE_SETTING.fix) == 1
    assert not decorative(embed)


@pytest.mark.parametrize(("healthy", "unhealthy"), [(28, 2), (20, 10), (180, 20), (0, 200), (200, 0)])
def test_health_of_many_environments_fits_one_message_and_accounts_for_every_one(healthy, unhealthy):
    reports = [x.healthy_report(f"env{i:03d}", 10 + i % 50) for i in range(healthy)]
    reports += [x.pgrst002_report(f"bad{i:03d}") for i in range(unhealthy)]
    embeds = health_embeds(reports, {r.env: x.pgrst002_diagnosis(r.env) for r in reports if not r.healthy})
    assert_within_discord_limits(embeds)
    (embed,) = embeds
    text = text_of(embed)
    if unhealthy:
        assert embed["title"] == f"PostgREST health: {unhealthy} unhealthy, {healthy} healthy"
        assert embed["fields"][0]["name"].startswith("❌ BAD000")  # the first unhealthy one in full
        shown = len(re.findall(r"BAD\d{3}", text))
        more = re.search(r"and (\d+) more", embed["fields"][-1]["value"])
        assert shown + (int(more[1]) if more else 0) == unhealthy
    else:
        assert embed["title"] == "PostgREST health: all 200 healthy"
    if healthy > 30:
        assert embed["description"].startswith(f"✅ {healthy} healthy (slowest ")
        named = len(re.findall(r"ENV\d{3}", embed["description"])) - 1  # the slowest is named twice
        more = re.search(r"and (\d+) more$", embed["description"])
        assert named + (int(more[1]) if more else 0) == healthy
    elif healthy:
        assert len(embed["description"].splitlines()) == healthy


def test_clip_cuts_at_a_word_and_closes_a_code_span():
    text = "last reload escalated (applied: it is why the cache cannot load)"
    cut = clip(text, 30)
    assert len(cut) <= 30 and cut.endswith("…") and text.startswith(cut[:-1])
    assert text[len(cut) - 1] == " "  # the cut is at the end of a word
    assert clip("fix: `ALTER ROLE authenticator RESET statement_timeout;` then wait", 30).count("`") == 2
    assert clip("short", 30) == "short"


def status(states, **extras) -> dict:
    embed = status_embed(states, MonitorHealth(), monitor_alive=True, reloads_in_window={})
    return with_status_extras(embed, extras.get("open_incidents", []), extras.get("interrupted", []))


def test_status_says_cause_and_fix_once_and_cuts_nothing_mid_word():
    state = x.unhealthy_state("prod")
    long_reason = state.last_reload.reason.split(". Cause: ")[0] + " (" + "applied to every role " * 30 + ")"
    state.last_reload = type(state.last_reload)(**{**state.last_reload.__dict__, "reason": long_reason})
    embed = status([state, x.healthy_state("dev")])
    prod, dev = embed["fields"]
    text = prod["value"]
    assert text.count(x.ROLE_SETTING.evidence) == 1 and text.count(x.ROLE_SETTING.fix) == 1
    reload_line = next(line for line in text.splitlines() if line.startswith("last reload"))
    assert reload_line.endswith("…")
    before_cut = reload_line[:-1].split(": escalated: ", 1)[1]
    assert long_reason.startswith(before_cut) and long_reason[len(before_cut)] in " ,;:.()"
    assert "❌ open alert since" in text
    assert dev["name"] == "✅ DEV — healthy" and len(dev["value"].splitlines()) == 1
    assert not decorative(embed)


def test_status_of_30_environments_with_open_incidents_fits_one_message():
    states = [x.unhealthy_state(f"bad{i}") for i in range(6)] + [x.healthy_state(f"env{i:02d}") for i in range(24)]
    incidents = [
        f"#{i} BAD{i} schema_cache_unavailable since <t:1796175900:R>, alert held (silenced)" for i in range(40)
    ]
    embed = status(states, open_incidents=incidents)
    assert_within_discord_limits([embed])
    names = [f["name"] for f in embed["fields"]]
    assert names[0] == "Open incidents" and names[-1] == "✅ 24 healthy"
    assert all(f"ENV{i:02d}" in embed["fields"][-1]["value"] for i in range(24))
    assert (
        sum(n.startswith("❌ BAD") for n in names)
        + sum(int(m) for m in re.findall(r"^(\d+) more", "\n".join(names), re.M))
        == 6
    )


def test_escalated_reload_gives_the_cause_and_fix_once():
    result = x.escalated_reload()
    embed = reload_embed("prod", reload_lines(result.steps, result), result=result, actor=result.actor)
    text = text_of(embed)
    assert embed["title"] == "❌ PROD escalated: schema cache cannot load (PGRST002)"
    assert text.count(x.ROLE_SETTING.evidence) == 1 and text.count(x.ROLE_SETTING.fix) == 1
    assert text.count("a reload cannot help") == 1  # the decision and the escalation are one line
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert list(fields) == ["Cause", "Also found", "Fix", "Audit"]
    assert "Alice (/reload) · prod · escalated" in fields["Audit"]
    assert embed_size(embed) <= 1000 and not decorative(embed)


def test_reload_progress_tells_the_cause_once_and_keeps_one_line_for_the_re_checks():
    result = x.recovered_reload()
    running = reload_lines(result.steps[:-2])  # still re-checking
    assert running[1] == f"diagnosis: stale schema cache; {x.STALE_OBJECT.line()}"
    assert running[-1] == "re-check 2 (+204 ms): stale_schema_cache"
    assert sum(line.startswith("re-check") for line in running) == 1
    done = reload_embed("dev", reload_lines(result.steps, result), result=result, actor=result.actor)
    assert done["title"] == "✅ DEV healthy after 309 ms"
    assert done["description"].splitlines()[1:] == [
        "diagnosis: stale schema cache; cause: schema cache is stale",
        "listener: PostgREST listens on 'pgrst' (1 session)",
        "NOTIFY pgrst 'reload schema' sent in 1.3 ms",
        "re-check 3 (+309 ms): healthy",
        "✅ healthy 309 ms after the NOTIFY (3 re-checks)",
    ]
    assert [f["name"] for f in done["fields"]] == ["KPIs", "Audit"]


def test_reload_refused_by_the_preflight_names_the_blocker_its_fix_once_and_how_to_force():
    result = x.refused_reload()
    embed = reload_embed("dev", reload_lines(result.steps, result), result=result, actor=result.actor)
    text = text_of(embed)
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert fields["Cause"].startswith("statement_timeout too low for authenticator: pg_db_role_setting")
    assert text.count(x.ROLE_SETTING.fix) == 1 and text.count(x.ROLE_SETTING.evidence) == 1
    assert "/reload dev force:true" in embed["description"].splitlines()[-1]


def test_interrupted_reload_is_marked_as_a_warning():
    result = x.recovered_reload()
    steps = [s for s in result.steps if s.kind in (StepKind.PROBE, StepKind.NOTIFY)]
    embed = reload_embed("prod", reload_lines(steps), result=None, actor="Alice", interrupted="interrupted by shutdown")
    assert embed["title"] == "⚠️ PROD reload interrupted by shutdown" and not decorative(embed)
    assert embed["fields"][0]["name"] == "Audit"


@pytest.mark.parametrize("result", [x.escalated_reload(), x.refused_reload()], ids=["cannot-help", "refused"])
def test_retry_reload_answer_gives_the_fix_once(result):
    text = retry_outcome(result.env, result)
    assert text.startswith(f"❌ The reload did not fix {result.env.upper()}: ")
    assert text.count(x.ROLE_SETTING.fix) == 1 and x.ROLE_SETTING.evidence not in text
