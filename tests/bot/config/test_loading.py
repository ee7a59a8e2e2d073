"""Bad configuration files get one readable error naming the key, and exit code 2 (bot/config/loading.py)."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import textwrap

import pytest

from bot.cli import main
from bot.config import load_settings

GOOD = """
environments:
  dev:
    rest_url: http://127.0.0.1:9/
    probe_tables: [judgments]
    api_key: {env: T_DEV_KEY}
    database_dsn: {env: T_DEV_DSN}
"""


def write(tmp_path, text: str | bytes):
    path = tmp_path / "config.yaml"
    if isinstance(text, bytes):
        path.write_bytes(text)
    else:
        path.write_text(textwrap.dedent(text))
    return path


def run_cli(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


BAD = [
    ("yaml syntax", "environments:\n  dev: [unclosed\n", "YAML syntax error at line"),
    ("unknown key", GOOD + "    colour: blue\n", "environments.dev.colour: unknown key"),
    ("wrong type", GOOD.replace("probe_tables: [judgments]", "probe_tables: 5"), "environments.dev.probe_tables"),
    (
        "missing required key",
        "environments:\n  dev:\n    probe_tables: []\n",
        "environments.dev.rest_url: required key is missing",
    ),
    ("not a URL", GOOD.replace("http://127.0.0.1:9/", "not-a-url"), "environments.dev.rest_url"),
    (
        "nothing to check",
        GOOD.replace("probe_tables: [judgments]", "probe_root: false"),
        "environments.dev: nothing to check",
    ),
    ("secret written inline", GOOD.replace("{env: T_DEV_KEY}", "eyJhbGciOi.secret"), "environments.dev.api_key"),
    ("both env and file", GOOD.replace("{env: T_DEV_KEY}", "{env: A, file: /x}"), "exactly one of"),
    ("bad recovery value", GOOD + "recovery:\n  retries: 0\n", "recovery.retries"),
    ("no environments", "environments: {}\n", "at least one environment"),
    ("top level not a mapping", "- a\n- b\n", "expected a mapping"),
    (
        "bad table name",
        GOOD.replace("[judgments]", "['judgments; drop']"),
        "environments.dev.probe_tables.0: not a [schema.]name",
    ),
    ("bad function", GOOD + "    probe_functions: ['add(a b)']\n", "environments.dev.probe_functions.0: expected ','"),
    (
        "bad exposed schema",
        GOOD + "    exposed_schemas: ['']\n",
        "environments.dev.exposed_schemas: an identifier cannot be empty",
    ),
    (
        "version guard without a source",
        GOOD + "    schema_version: {query: 'select 1'}\n",
        "environments.dev.schema_version: set expected or expected_env",
    ),
]


# Secrets an operator might paste where a reference belongs: never echoed back.
JWT = "eyJhbGciOiJIUzI1NiJ9.eyJyb2xlIjoiYW5vbiJ9.c2VjcmV0LXNpZ25hdHVyZQ"
DSN = "postgresql://ops:hunter2-pw@db.example.com:5432/postgres"
WEBHOOK = "https://discord.com/api/webhooks/123456789012345678/webhook-token-part"
SECRET_PARTS = ("eyJhbGciOiJIUzI1NiJ9", "c2VjcmV0", "hunter2", "webhook-token-part")


def env_line(key: str, value: str) -> str:
    return GOOD + f"    {key}: {value}\n"


def laughs(levels: int) -> str:
    """Each anchor repeats the previous ten times: 10**levels values once expanded."""
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, levels)]
    return "\n".join(lines) + "\n" + GOOD


HAZARDS = [
    # duplicate keys at any level: the last would silently win
    (
        "two prod blocks",
        GOOD + "  prod:\n    rest_url: http://a/\n    protected: true\n  prod:\n    rest_url: http://b/\n",
        "environments.prod: duplicate key at lines 8 and 11",
    ),
    ("duplicate nested key", env_line("timeouts", "{read_s: 3, read_s: 30}"), "environments.dev.timeouts.read_s"),
    ("duplicate top-level key", GOOD + "recovery: {}\nrecovery: {retries: 1}\n", "recovery: duplicate key at lines"),
    # files that are not a config at all
    (
        "not UTF-8",
        GOOD.encode() + "    reload_role: op\xe9\n".encode("latin-1"),
        "not UTF-8 text (byte 0xe9 at line 8)",
    ),
    ("NUL byte", GOOD + "\x00\n", "character #x0000 is not allowed"),
    ("deep flow nesting", "environments: " + "[" * 100_000 + "]" * 100_000 + "\n", "nested deeper than 16 levels"),
    (
        "deep block nesting",
        "".join(f"{'  ' * i}k{i}:\n" for i in range(40)) + "  " * 40 + "x: 1\n",
        "nested deeper than 16 levels at line 16",
    ),
    ("billion laughs", laughs(9), "aliases expand to more than 100000 values"),
    ("alias into itself", "environments: &a [*a]\n", "aliases nest deeper than 16 levels"),
    ("huge file", GOOD + "#" * (2 * 1024 * 1024) + "\n", "larger than 1024 KiB"),
    # environment names that could never be selected
    ("env named --force", GOOD.replace("  dev:", "  --force:"), "environments: environment name --force must be"),
    ("env named -h", GOOD.replace("  dev:", "  -h:"), "not starting with '-'"),
    ("env name too long", GOOD.replace("  dev:", "  " + "d" * 500 + ":"), "environment name 'ddd"),
    # numbers out of sensible ranges
    ("inf", env_line("timeouts", "{read_s: .inf}"), "environments.dev.timeouts.read_s: Input should be a finite"),
    ("nan", env_line("timeouts", "{total_s: .nan}"), "environments.dev.timeouts.total_s: Input should be a finite"),
    ("1e308 (text in YAML 1.1)", env_line("timeouts", "{total_s: 1e308}"), "total_s: expected a number, not text"),
    ("1.0e+308", env_line("timeouts", "{total_s: 1.0e+308}"), "total_s: Input should be less than or equal to 300"),
    ("true as a count", GOOD + "recovery: {retries: true}\n", "recovery.retries: expected a whole number, not true"),
    ("true as seconds", GOOD + "monitor: {interval_s: true}\n", "monitor.interval_s: expected a number, not true"),
    (
        "timeout too short",
        env_line("timeouts", "{connect_s: 0.01}"),
        "connect_s: Input should be greater than or equal to 0.1",
    ),
    (
        "delay over 600 s",
        GOOD + "recovery: {delay_s: 601}\n",
        "recovery.delay_s: Input should be less than or equal to 600",
    ),
    (
        "interval under 1 s",
        GOOD + "monitor: {interval_s: 0.5}\n",
        "monitor.interval_s: Input should be greater than or equal to 1",
    ),
    (
        "drift interval 0.5 s",
        GOOD + "monitor: {drift_interval_s: 0.5}\n",
        "drift_interval_s: must be 0 (off) or at least 1",
    ),
    ("true as a grace period", GOOD + "discord: {shutdown_grace_s: true}\n", "shutdown_grace_s: expected a number"),
    (
        "confirmation timeout under 0.1 s",
        GOOD + "discord: {confirm_timeout_s: 0.0001}\n",
        "discord.confirm_timeout_s: Input should be greater than or equal to 0.1",
    ),
    (
        "reminder interval 0.3 s",
        GOOD + "incidents: {reminder_interval_s: 0.3}\n",
        "incidents.reminder_interval_s: must be 0 (off) or at least 1",
    ),
    (
        "silence over 30 days",
        GOOD + "incidents: {max_silence_s: 2678400}\n",
        "incidents.max_silence_s: Input should be less",
    ),
    (
        "silence button over the limit",
        GOOD + "incidents: {max_silence_s: 3600, silence_button_s: 7200}\n",
        "incidents: silence_button_s must not exceed max_silence_s",
    ),
    ("KPI of 11 days", GOOD + "recovery: {kpi: {reload_alert_ms: 1000000000}}\n", "recovery.kpi.reload_alert_ms"),
    ("fractional count", GOOD + "recovery: {retries: 2.5}\n", "recovery.retries: expected a whole number"),
    # the usual YAML slips, with a hint
    ("tab indentation", GOOD.replace("    probe_tables", "\tprobe_tables"), "indent with spaces, not tabs"),
    ("@role unquoted", GOOD + "discord:\n  ops_role: @ops\n", "may not start with '@' or '`' unless quoted"),
    (
        "#channel as a value",
        GOOD + "discord:\n  ops_channel_id: #ops-alerts\n",
        "discord.ops_channel_id: YAML reads '#...' as a comment, so the value is empty; give the channel's numeric id",
    ),
    ("#role as a value", env_line("reload_role", "#ops-prod"), "environments.dev.reload_role: YAML reads '#...' as a"),
    # secrets written inline: named, never echoed
    (
        "JWT as api_key",
        GOOD.replace("{env: T_DEV_KEY}", JWT),
        "environments.dev.api_key: never write the secret itself",
    ),
    ("JWT in env:", GOOD.replace("T_DEV_KEY", JWT), "environments.dev.api_key: 'env' takes the name of an environment"),
    ("DSN in env:", GOOD.replace("T_DEV_DSN", f"'{DSN}'"), "environments.dev.database_dsn: 'env' takes the name"),
    ("DSN as database_dsn", GOOD.replace("{env: T_DEV_DSN}", DSN), "environments.dev.database_dsn: never write the"),
    ("DSN in file:", GOOD.replace("{env: T_DEV_DSN}", f"{{file: '{DSN}'}}"), "'file' takes a path, not a URL or DSN"),
    ("secret as a key", GOOD.replace("{env: T_DEV_KEY}", f"{{env: K, {JWT}: 1}}"), "takes only 'env' (variable name)"),
    ("webhook URL inline", GOOD + f"discord:\n  webhook_url: {WEBHOOK}\n", "discord.webhook_url: never write the"),
    # many problems still make one bounded line
    ("many errors", "environments:\n" + "".join(f"  e{i}: {{}}\n" for i in range(50)), "and 45 more"),
]


@pytest.mark.parametrize(("text", "expected"), [b[1:] for b in BAD + HAZARDS], ids=[b[0] for b in BAD + HAZARDS])
def test_bad_config_exits_2_with_one_line_naming_the_key(tmp_path, text, expected):
    code, out, err = run_cli("--config", str(write(tmp_path, text)), "check")
    assert code == 2
    assert expected in err
    assert "Traceback" not in err and out == ""
    assert err.count("\n") == 1 and len(err) < 1000, err[:2000]
    assert not any(part in err for part in SECRET_PARTS), err


@pytest.mark.parametrize(
    "command", [["bot.cli", "check"], ["bot"]], ids=["python -m bot.cli check", "python -m bot (the bot)"]
)
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (GOOD + "  dev:\n    rest_url: http://b/\n", "environments.dev: duplicate key at lines 3 and 8"),
        (b"environments: " + b"[" * 200_000 + b"]" * 200_000, "nested deeper than 16 levels"),
        (b"\xff\xfe" + "environments:\n".encode("utf-16-le"), "not UTF-8 text"),
        (GOOD.replace("T_DEV_DSN", DSN), "environments.dev.database_dsn: 'env' takes the name"),
    ],
    ids=["duplicate", "deep", "UTF-16", "DSN in env"],
)
def test_entry_points_exit_2_with_one_line_and_no_traceback(tmp_path, command, text, expected):
    module, *args = command
    proc = subprocess.run(
        [sys.executable, "-m", module, "--config", str(write(tmp_path, text)), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr[-2000:]
    assert proc.stderr.startswith("pgrst-ops: configuration error: ") and expected in proc.stderr
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr and proc.stdout == ""
    assert "hunter2" not in proc.stderr


def test_anchors_merge_keys_and_spaced_comments_still_work(tmp_path):
    text = """
    environments:
      dev: &dev
        rest_url: http://127.0.0.1:9/
        timeouts: &fast {connect_s: 0.5, read_s: 1, total_s: 2}
        reload_role: # none: the ops role
      prod:
        <<: *dev
        protected: true
        timeouts: *fast
    """
    settings = load_settings(write(tmp_path, text))
    prod = settings.environments["prod"]
    assert prod.protected and prod.timeouts.total_s == 2 and prod.rest_base == "http://127.0.0.1:9"
    assert settings.environments["dev"].reload_role is None


def test_missing_config_file_exits_2(tmp_path):
    code, _, err = run_cli("--config", str(tmp_path / "nope.yaml"), "check")
    assert code == 2 and "config file not found" in err


def test_unknown_environment_exits_2_and_lists_known(tmp_path, monkeypatch):
    monkeypatch.setenv("T_DEV_KEY", "k")
    code, _, err = run_cli("--config", str(write(tmp_path, GOOD)), "check", "--env", "qa")
    assert code == 2 and "unknown environment 'qa'" in err and "dev" in err


def test_config_path_from_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("PGRST_OPS_CONFIG", str(tmp_path / "elsewhere.yaml"))
    code, _, err = run_cli("check")
    assert code == 2 and "elsewhere.yaml" in err


def test_example_config_is_valid_and_holds_no_secret():
    settings = load_settings("config.example.yaml")
    assert {"dev", "prod"} <= set(settings.environments)
    text = open("config.example.yaml").read()
    assert "eyJ" not in text and "postgresql://" not in text and "discord.com/api/webhooks" not in text


@pytest.mark.parametrize(
    ("text", "key"),
    [
        (
            GOOD + "  prod:\n    rest_url: http://a/\n    protected: true\n  prod:\n    rest_url: http://b/\n",
            "environments.prod",
        ),
        (env_line("timeouts", "{read_s: 3, read_s: 30}"), "environments.dev.timeouts.read_s"),
        (GOOD + "discord:\n  ops_channel_id: #ops-alerts\n", "discord.ops_channel_id"),
        ("environments: " + "[" * 100 + "]" * 100 + "\n", None),  # no key to name: the line is in the message
    ],
    ids=["two prod blocks", "duplicate nested key", "#channel as a value", "deep nesting"],
)
def test_yaml_hazards_name_their_key_in_the_json_error(tmp_path, text, key):
    code, out, err = run_cli("--config", str(write(tmp_path, text)), "check", "--json")
    doc = json.loads(out)
    assert code == 2 and set(doc) == {"error", "key"} and doc["key"] == key, doc
    assert doc["error"].startswith(f"configuration error: {tmp_path}") and "Traceback" not in err
