"""The config's URLs (bot/config/fields.py `http_url`): what an operator writes is accepted and normalised as a
browser would, a wrong one is refused with one line naming the key, and no error repeats the URL."""

from __future__ import annotations

import pytest

from bot.config import ConfigError, parse_settings
from tests.support.pgstack import made_up_password


def settings_with(**env):
    return parse_settings({"environments": {"dev": {"rest_url": "http://127.0.0.1:9/", **env}}})


@pytest.mark.parametrize(
    ("written", "kept"),
    [
        ("http://localhost:3000", "http://localhost:3000/"),
        ("https://abcdefghijklmnopqrst.supabase.co/rest/v1", "https://abcdefghijklmnopqrst.supabase.co/rest/v1"),
        ("HTTPS://API.Example.COM:443/rest/v1/", "https://api.example.com/rest/v1/"),
        ("http://example.com:80/a?b=1#top", "http://example.com/a?b=1#top"),
        ("http://[::1]:3000", "http://[::1]:3000/"),
        ("https://bücher.example/rest", "https://xn--bcher-kva.example/rest"),
        ("  http://127.0.0.1:9/  ", "http://127.0.0.1:9/"),
    ],
)
def test_a_url_is_kept_in_its_normal_form(written, kept):
    env = settings_with(rest_url=written, dashboard_url=written).environments["dev"]
    assert (env.rest_url, env.dashboard_url) == (kept, kept)
    assert env.rest_base == kept.rstrip("/")


@pytest.mark.parametrize(
    ("written", "says"),
    [
        ("not-a-url", "must be an absolute URL starting with http:// or https://"),
        ("ftp://files.example/", "must be an absolute URL starting with http:// or https://"),
        ("http:/example.com", "must be an absolute URL starting with http:// or https://"),
        ("http://", "is not a valid URL: check its host and port"),
        ("http://example.com:99999/", "is not a valid URL: check its host and port"),
        ("http://exa mple.com/", "without spaces"),
        ("http://bad$host/", "is not a valid URL: check its host and port"),
        ("http://x/" + "a" * 2100, "at most 2083 characters"),
    ],
)
def test_a_wrong_url_is_one_line_naming_the_key(written, says):
    with pytest.raises(ConfigError) as caught:
        settings_with(admin_url=written)
    assert caught.value.key == "environments.dev.admin_url"
    assert str(caught.value).startswith("config: environments.dev.admin_url: ")
    assert says in str(caught.value) and "\n" not in str(caught.value)


def test_a_url_that_is_not_text_is_refused():
    with pytest.raises(ConfigError) as caught:
        settings_with(rest_url=3000)
    assert caught.value.key == "environments.dev.rest_url"


def test_the_error_never_repeats_a_password_in_the_url():
    password = made_up_password()
    with pytest.raises(ConfigError) as caught:
        settings_with(rest_url=f"http://ops:{password}@db.example:70000/")
    assert "check its host and port" in str(caught.value)
    assert password not in str(caught.value)


def test_the_management_api_url_defaults_to_supabase_and_stays_https():
    supabase = {"project_ref": "abcdefghijklmnopqrst"}
    assert settings_with(supabase=supabase).environments["dev"].supabase.api_base == "https://api.supabase.com"
    with pytest.raises(ConfigError, match="must be https"):
        settings_with(supabase={**supabase, "api_url": "http://api.supabase.com"})
