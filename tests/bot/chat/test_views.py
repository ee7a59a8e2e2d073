"""The alert buttons' DynamicItem: the one place the custom id `pgrst:incident:{action}:{id}` is built and
parsed. Alerts already posted carry such ids, so the format is pinned here. No Discord connection needed."""

from __future__ import annotations

import pytest

from bot.chat.views import INCIDENT_ID, IncidentButton, alert_view
from bot.messages.alert import AlertButtons


@pytest.mark.parametrize("action", ["ack", "silence", "retry", "restart"])
async def test_the_custom_id_round_trips(action: str) -> None:
    button = IncidentButton(action, 4711)
    assert button.custom_id == f"pgrst:incident:{action}:4711"
    assert IncidentButton.parse(button.custom_id) == (action, 4711)
    match = INCIDENT_ID.fullmatch(button.custom_id)
    assert match is not None
    rebuilt = await IncidentButton.from_custom_id(None, button.item, match)  # type: ignore[arg-type]
    assert (rebuilt.action, rebuilt.incident_id, rebuilt.custom_id) == (action, 4711, button.custom_id)


@pytest.mark.parametrize(
    "custom_id",
    [
        "pgrst:incident:reboot:1",  # no such action
        "pgrst:incident:ack:",  # no id
        "pgrst:incident:ack:12x",  # trailing junk
        "pgrst:incident:ack:-3",
        "pgrst:incident:ack:1234567890123456789",  # 19 digits: longer than any id
        "pgrst:incident:ACK:1",
        "xpgrst:incident:ack:1",
        "pgrst:recheck:prod",  # /health's button, not an alert's
        "",
    ],
)
def test_a_malformed_custom_id_is_refused(custom_id: str) -> None:
    assert IncidentButton.parse(custom_id) is None


def test_an_unknown_action_cannot_be_built() -> None:
    with pytest.raises(ValueError, match="reboot"):
        IncidentButton("reboot", 1)


def test_a_subclass_keeps_the_id_format() -> None:
    class Handler(IncidentButton):  # what cogs.incidents registers
        pass

    assert Handler.__discord_ui_compiled_template__ is INCIDENT_ID
    assert Handler("retry", 7).custom_id == "pgrst:incident:retry:7"


async def test_the_alert_view_carries_the_three_buttons_and_the_restart_link() -> None:
    view = alert_view(42, "https://example.com/restart")
    assert view is not None
    ids = [getattr(item, "custom_id", None) for item in view.children]
    assert ids[:3] == ["pgrst:incident:ack:42", "pgrst:incident:silence:42", "pgrst:incident:retry:42"]
    assert [getattr(item, "url", None) for item in view.children][3] == "https://example.com/restart"
    components = view.to_components()
    assert [c["custom_id"] for c in components[0]["components"][:3]] == ids[:3]


async def test_no_incident_and_no_link_means_no_view() -> None:
    assert alert_view(None, None) is None


async def test_with_a_project_token_the_restart_is_a_button_not_the_link() -> None:
    view = alert_view(42, "https://example.com/restart", AlertButtons(retry=False, restart=True))
    assert view is not None
    assert [getattr(item, "custom_id", None) for item in view.children] == [
        "pgrst:incident:ack:42",
        "pgrst:incident:silence:42",
        "pgrst:incident:restart:42",
    ]
    assert not [item for item in view.children if getattr(item, "url", None)]


async def test_the_restart_button_is_disabled_while_a_restart_is_followed() -> None:
    view = alert_view(42, None, AlertButtons(retry=False, restart=True, restarting=True))
    assert view is not None
    restart = view.children[-1]
    assert isinstance(restart, IncidentButton) and restart.action == "restart"
    assert restart.item.disabled and restart.item.label == "Restarting…"
