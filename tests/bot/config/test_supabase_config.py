"""The environment's optional `supabase` section: readable errors naming the key, the token a secret."""

from __future__ import annotations

import logging
import secrets

import pytest

from bot.config import ConfigError, resolve_targets
from bot.config.loading import load_settings
from bot.redact import RedactingFilter, scrub
from tests.conftest import build_settings, write_config

TOKEN = "sbp_" + secrets.token_hex(20)  # the shape of a personal access token, made up at run time


def env(**supabase):
    return {
        "dev": {"rest_url": "http://localhost:3000", "supabase": {"project_ref": "abcdefghijklmnopqrst", **supabase}}
    }


def test_defaults_point_at_supabase_and_the_usual_variable() -> None:
    cfg = build_settings(env()).environments["dev"].supabase
    assert cfg is not None and cfg.api_base == "https://api.supabase.com"
    assert cfg.access_token.env == "SUPABASE_ACCESS_TOKEN"
    assert (cfg.unhealthy_cache_s, cfg.healthy_cache_s, cfg.transition_hold_s) == (30, 300, 600)


@pytest.mark.parametrize(
    ("supabase", "message"),
    [
        ({"project_ref": "My Project"}, "environments.dev.supabase.project_ref: a project ref is lower-case"),
        ({"api_url": "http://api.supabase.com"}, "environments.dev.supabase.api_url: must be https"),
        ({"api_url": "https://api.supabase.com/v1"}, "environments.dev.supabase.api_url: the API's base URL only"),
        ({"access_token": TOKEN}, "environments.dev.supabase.access_token: never write the secret itself"),
        ({"unhealthy_cache_s": 1}, "environments.dev.supabase.unhealthy_cache_s"),
        ({"projectref": "x"}, "environments.dev.supabase.projectref: unknown key"),
    ],
)
def test_a_bad_section_is_one_line_naming_the_key(tmp_path, supabase, message) -> None:
    path = write_config(tmp_path / "c.yaml", env(**supabase))
    with pytest.raises(ConfigError) as err:
        load_settings(str(path))
    assert message in str(err.value) and "\n" not in str(err.value) and TOKEN not in str(err.value)


def test_http_is_allowed_for_a_local_test_server_only() -> None:
    cfg = build_settings(env(api_url="http://127.0.0.1:8080")).environments["dev"].supabase
    assert cfg is not None and cfg.api_base == "http://127.0.0.1:8080"


def test_a_missing_token_names_the_key_and_the_variable() -> None:
    settings = build_settings(env(access_token={"env": "SB_TOKEN"}))
    with pytest.raises(ConfigError) as err:
        resolve_targets(settings, environ={})
    assert str(err.value) == "environments.dev.supabase.access_token: environment variable SB_TOKEN is not set or empty"
    assert err.value.key == "environments.dev.supabase.access_token"


def test_the_token_is_registered_and_never_logged() -> None:
    settings = build_settings(env(access_token={"env": "SB_TOKEN"}))
    (target,) = resolve_targets(settings, environ={"SB_TOKEN": TOKEN})
    assert target.secrets.supabase_token is not None and target.secrets.supabase_token.get_secret_value() == TOKEN
    assert TOKEN not in repr(target) and scrub(f"Authorization: Bearer {TOKEN}") == "Authorization: Bearer ***"
    record = logging.LogRecord("x", logging.WARNING, __file__, 1, "calling with %s", (TOKEN,), None)
    RedactingFilter().filter(record)
    assert TOKEN not in record.getMessage()


def test_an_environment_without_the_section_needs_no_token() -> None:
    settings = build_settings({"dev": {"rest_url": "http://localhost:3000"}})
    (target,) = resolve_targets(settings, environ={})
    assert target.config.supabase is None and target.secrets.supabase_token is None
