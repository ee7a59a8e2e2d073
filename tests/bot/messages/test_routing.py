"""Where an environment alerts, in words, and the pings of a line for several environments (bot/messages/routing.py)."""

from __future__ import annotations

from datetime import UTC, datetime

from bot.config import AlertRoute
from bot.messages.incidents import incidents_embed, network_lost_line
from bot.messages.routing import route_text, with_pings

CH, ROLE, ROLE_2 = 100000000000000001, 200000000000000001, 200000000000000002


def test_route_text_names_the_channel_and_who_is_pinged_in_one_short_line():
    assert route_text(AlertRoute(CH, ROLE)) == f"alerts → <#{CH}>, pings <@&{ROLE}>"
    assert route_text(AlertRoute(CH, None)) == f"alerts → <#{CH}>, no ping"
    assert route_text(AlertRoute(None, "oncall")) == "alerts → no channel set (webhook only), pings @oncall"
    assert all(len(route_text(AlertRoute(CH, r))) <= 80 for r in (ROLE, None, "x" * 40))


def test_with_pings_leads_with_each_role_once_and_allows_only_those():
    line = network_lost_line(["prod", "staging"], datetime(2026, 1, 1, tzinfo=UTC))
    pinged = with_pings(line, [ROLE, ROLE_2, ROLE])
    assert pinged["content"].startswith(f"<@&{ROLE}> <@&{ROLE_2}> Every environment (PROD, STAGING)")
    assert pinged["allowed_mentions"] == {"parse": [], "roles": [str(ROLE), str(ROLE_2)]}
    quiet = with_pings(line, [])
    assert quiet["content"] == line["content"] and quiet["allowed_mentions"] == {"parse": [], "roles": []}
    assert "1 outage." in network_lost_line(["dev"], datetime(2026, 1, 1, tzinfo=UTC))["content"]


def test_incidents_lists_where_each_environment_alerts():
    routes = {"prod": AlertRoute(CH, ROLE), "dev": AlertRoute(CH + 1, None)}
    at = datetime(2026, 1, 1, tzinfo=UTC)
    everything = incidents_embed([], [], None, at, routes)["description"]
    assert everything.splitlines()[1:] == [
        f"**PROD** alerts → <#{CH}>, pings <@&{ROLE}>",
        f"**DEV** alerts → <#{CH + 1}>, no ping",
    ]
    assert incidents_embed([], [], "dev", at, routes)["description"].splitlines()[1:] == [
        f"**DEV** alerts → <#{CH + 1}>, no ping"
    ]
