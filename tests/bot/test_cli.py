"""`pgrst-ops check` / `fix` as a CI pipeline runs them: real processes, real PostgREST, exit codes, JSON."""

from __future__ import annotations

import asyncio
import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path

from aiohttp import web

from tests.conftest import write_config
from tests.support.localhttp import LocalServer

CANARY = "canary-Pw-1c0ffee"


def cli(config, *args: str, env: dict | None = None, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "bot.cli", "--config", str(config), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
    )


async def acli(config, *args: str, env: dict | None = None) -> subprocess.CompletedProcess[str]:
    return await asyncio.to_thread(cli, config, *args, env=env)


async def test_check_healthy_prints_the_runbook_shape(make_stack, tmp_path):
    stack = make_stack()
    proc = await acli(write_config(tmp_path / "c.yaml", {"prod": stack.env_config()}), "check")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "PostgREST Health [PROD]: ✅ HEALTHY"
    assert any(line.strip().startswith("Root (/)") and "✅ OK (HTTP 200" in line for line in lines)
    assert any("Data (judgments)" in line for line in lines)


async def test_check_json_document_for_ci(make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    config = write_config(
        tmp_path / "c.yaml", {"dev": stack.env_config(), "staging": stack.env_config(probe_tables=["orders"])}
    )
    proc = await acli(config, "check", "--json")
    assert proc.returncode == 1
    doc = json.loads(proc.stdout)
    envs = {e["env"]: e for e in doc["environments"]}
    assert envs["dev"]["healthy"] is True and envs["dev"]["verdict"] == "healthy"
    assert envs["staging"]["verdict"] == "stale_schema_cache" and envs["staging"]["explanation"]
    for check in envs["staging"]["checks"]:
        assert {"name", "url", "status", "code", "latency_ms", "ok"} <= set(check)
    assert "checked_at" in envs["dev"]
    assert envs["dev"]["server_version"] == "postgrest/12.0.2"  # the version the environment reports
    only_dev = await acli(config, "check", "--env", "dev", "--json")
    assert only_dev.returncode == 0 and [e["env"] for e in json.loads(only_dev.stdout)["environments"]] == ["dev"]


async def test_fix_recovers_a_stale_cache_and_reports_json(make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    config = write_config(tmp_path / "c.yaml", {"prod": stack.env_config(probe_tables=["orders"])})
    proc = await acli(config, "fix", "--env", "prod", "--json", env=stack.env_vars)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["outcome"] == "recovered" and doc["verdict_before"] == "stale_schema_cache"
    assert doc["verdict_after"] == "healthy" and doc["notify_sent"] is True
    assert doc["notify_ms"] > 0 and doc["time_to_healthy_ms"] > 0 and doc["attempts"] >= 1
    assert doc["reason"] is None
    assert doc["server_version"] == "postgrest/12.0.2"  # as in `check --json`
    again = await acli(config, "fix", "--env", "prod", env=stack.env_vars)
    assert again.returncode == 0 and "Already healthy" in again.stdout


async def test_fix_text_output_walks_through_the_steps(make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    config = write_config(tmp_path / "c.yaml", {"prod": stack.env_config(probe_tables=["orders"])})
    proc = await acli(config, "fix", "--env", "prod", env=stack.env_vars)
    assert proc.returncode == 0, proc.stdout
    out = proc.stdout
    for marker in ("Environment: PROD", "STEP 1", "stale_schema_cache", "NOTIFY", "✅ AUTOMATED RECOVERY SUCCESSFUL"):
        assert marker in out, marker


class Recorder:
    """A local stand-in for a Discord webhook that records what it is sent."""

    def __init__(self, fail_first: int = 0) -> None:
        self.posts: list[dict] = []
        self.fail_first = fail_first

    async def handle(self, request: web.Request) -> web.Response:
        if self.fail_first:
            self.fail_first -= 1
            return web.json_response({"message": "You are being rate limited.", "retry_after": 0.2}, status=429)
        self.posts.append({"query": dict(request.query), "json": await request.json()})
        return web.json_response({"id": "1"})

    async def __aenter__(self) -> str:
        app = web.Application()
        app.router.add_post("/api/webhooks/{id}/{token}", self.handle)
        self.server = LocalServer(app)
        base = await self.server.__aenter__()
        return f"{base}/api/webhooks/123/tok-{CANARY}"

    async def __aexit__(self, *exc) -> None:
        await self.server.__aexit__(*exc)


async def test_pgrst002_fix_escalates_posts_the_critical_alert_and_exits_1(make_stack, tmp_path):
    stack = make_stack(steady_pgrst002=True)
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    stack.notify()
    await stack.wait_for_code("PGRST002")
    recorder = Recorder(fail_first=1)
    async with recorder as hook_url:
        config = write_config(
            tmp_path / "c.yaml",
            {"prod": stack.env_config()},
            discord={"webhook_url": {"env": "HOOK"}, "alert_role_id": 424242424242424242},
        )
        proc = await acli(config, "fix", "--env", "prod", env={**stack.env_vars, "HOOK": hook_url})
    assert proc.returncode == 1
    assert "AUTOMATED RECOVERY FAILED" in proc.stdout and "schema_cache_unavailable" in proc.stdout
    assert "✅ Discord alert sent" in proc.stdout
    assert "https://supabase.com/dashboard/project/testref/settings/general" in proc.stdout
    assert len(recorder.posts) == 1 and recorder.posts[0]["query"] == {"wait": "true"}
    payload = recorder.posts[0]["json"]
    embed = payload["embeds"][0]
    assert embed["title"] == "CRITICAL · PROD: schema cache cannot load (PGRST002)"
    assert "pgrst_ops" not in payload  # the alert's private facts stay home
    assert "<@&424242424242424242>" in payload["content"] and payload["allowed_mentions"] == {
        "parse": [],
        "roles": ["424242424242424242"],
    }
    assert "statement_timeout too low for authenticator" in payload["content"]
    fields = {f["name"]: f["value"] for f in embed["fields"]}
    assert "PGRST002" in fields["Failing checks"]
    # The alert carries the diagnosis: cause, evidence, fix.
    assert "statement_timeout=1ms" in fields["Cause: statement_timeout too low for authenticator"]
    assert f"ALTER ROLE authenticator IN DATABASE {stack.db} RESET statement_timeout" in fields["Fix"]
    assert "Cause: statement_timeout too low" in proc.stdout
    assert CANARY not in proc.stdout + proc.stderr


async def test_missing_webhook_warns_and_goes_on(make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()
    config = write_config(
        tmp_path / "c.yaml", {"prod": stack.env_config()}, discord={"webhook_url": {"env": "NO_SUCH_HOOK"}}
    )
    proc = await acli(config, "fix", "--env", "prod", env=stack.env_vars)
    assert proc.returncode == 1
    assert "postgrest_down" in proc.stdout and "NO_SUCH_HOOK is not set" in proc.stdout


async def test_canary_password_never_appears_in_any_output(make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    config = write_config(tmp_path / "c.yaml", {"prod": stack.env_config(probe_tables=["orders"])})
    bad_dsn = {f"DSN_{stack.db.upper()}": stack.dsn("ops", CANARY)}
    for args in (("fix", "--env", "prod"), ("fix", "--env", "prod", "--json", "--verbose"), ("check", "--verbose")):
        proc = await acli(config, *args, env=bad_dsn)
        assert CANARY not in proc.stdout + proc.stderr, args
    assert (
        "rejected the login" in proc.stdout
        or "rejected the login" in (await acli(config, "fix", "--env", "prod", env=bad_dsn)).stdout
    )


def test_bad_usage_exits_2(tmp_path):
    proc = cli(tmp_path / "none.yaml", "fix")  # --env missing
    assert proc.returncode == 2 and "--env" in proc.stderr


async def test_check_with_a_dsn_tells_missing_from_stale(make_stack, tmp_path):
    stack = make_stack()
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    config = write_config(
        tmp_path / "c.yaml",
        {
            "staging": stack.env_config(probe_tables=["orders"]),
            "qa": stack.env_config(probe_tables=["invoices"]),
        },
    )
    proc = await acli(config, "check", env=stack.env_vars)
    assert proc.returncode == 1
    assert "PostgREST Health [STAGING]: ❌ STALE_SCHEMA_CACHE" in proc.stdout
    assert "PostgREST Health [QA]: ❌ MISSING_IN_DATABASE" in proc.stdout
    assert "Cause: table missing in the database: public.invoices does not exist" in proc.stdout
    doc = json.loads((await acli(config, "check", "--json", env=stack.env_vars)).stdout)
    envs = {e["env"]: e for e in doc["environments"]}
    assert envs["staging"]["diagnosis"]["findings"][0]["cause"] == "stale_object"
    assert envs["qa"]["verdict"] == "missing_in_database"


async def test_fix_refused_by_preflight_exits_1_and_force_sends_the_notify(make_stack, tmp_path):
    stack = make_stack(extra_env={"PGRST_DB_POOL": "1"})
    stack.sql("CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;")
    stack.sql(f"ALTER ROLE authenticator IN DATABASE {stack.db} SET statement_timeout = '1ms'")
    config = write_config(
        tmp_path / "c.yaml", {"dev": stack.env_config(probe_tables=["orders"])}, recovery={"retries": 2, "delay_s": 1}
    )
    refused = await acli(config, "fix", "--env", "dev", "--no-alert", "--json", env=stack.env_vars)
    doc = json.loads(refused.stdout)
    assert refused.returncode == 1 and doc["refused_by_preflight"] and not doc["notify_sent"]
    assert doc["diagnosis"]["findings"][0]["cause"] == "role_setting"
    text = await acli(config, "fix", "--env", "dev", "--no-alert", env=stack.env_vars)
    assert "Force it anyway: pgrst-ops fix --env dev --force" in text.stdout
    # The named cause is the action; no restart advice (a restart would apply the bad setting).
    assert (
        f"❌ ACTION REQUIRED: ALTER ROLE authenticator IN DATABASE {stack.db} RESET statement_timeout;" in text.stdout
    )
    assert "Recovery steps" not in text.stdout and "Restart Project" not in text.stdout
    forced = await acli(config, "fix", "--env", "dev", "--no-alert", "--force", "--json", env=stack.env_vars)
    doc = json.loads(forced.stdout)
    assert forced.returncode == 1 and doc["notify_sent"] and doc["forced"]
    assert doc["verdict_after"] == "schema_cache_unavailable"


async def test_drift_names_what_is_missing_and_ungranted_and_exits_1(make_stack, tmp_path):
    stack = make_stack()
    stack.sql(
        "CREATE TABLE public.orders (id int primary key); GRANT SELECT ON public.orders TO anon;"
        "CREATE TABLE public.audit (id int);"
    )
    config = write_config(tmp_path / "c.yaml", {"dev": stack.env_config()})
    proc = await acli(config, "drift", "--env", "dev", env=stack.env_vars)
    assert proc.returncode == 1, proc.stderr
    assert "Schema drift [DEV]: ❌ STALE" in proc.stdout
    assert "Missing in the API (reload helps): tables public.orders" in proc.stdout
    assert "Not granted to the API roles (GRANT; reload cannot help): tables public.audit" in proc.stdout
    stack.notify()
    await asyncio.sleep(0.5)
    again = await acli(config, "drift", "--json", env=stack.env_vars)
    doc = json.loads(again.stdout)
    assert (
        again.returncode == 0 and doc["in_sync"] and doc["environments"][0]["ungranted"]["tables"] == ["public.audit"]
    )


async def test_check_shows_the_schema_version_guard(make_stack, tmp_path):
    stack = make_stack()
    stack.sql(
        "CREATE SCHEMA supabase_migrations;"
        "CREATE TABLE supabase_migrations.schema_migrations (version text primary key);"
        "INSERT INTO supabase_migrations.schema_migrations VALUES ('20261101000000'), ('20261115000000');"
        "GRANT USAGE ON SCHEMA supabase_migrations TO ops;"
        "GRANT SELECT ON supabase_migrations.schema_migrations TO ops;"
    )
    config = write_config(
        tmp_path / "c.yaml", {"dev": stack.env_config(schema_version={"expected_env": "APP_SCHEMA_VERSION"})}
    )
    ahead = await acli(config, "check", env={**stack.env_vars, "APP_SCHEMA_VERSION": "20261120000000"})
    assert ahead.returncode == 0
    assert "Schema version: ❌ run_migrations" in ahead.stdout and "20261115000000" in ahead.stdout
    same = await acli(config, "check", "--json", env={**stack.env_vars, "APP_SCHEMA_VERSION": "20261115000000"})
    assert json.loads(same.stdout)["environments"][0]["schema_version"]["status"] == "compatible"


async def test_json_errors_are_one_json_document_on_stdout_with_the_key(make_stack, tmp_path):
    stack = make_stack()
    config = write_config(tmp_path / "c.yaml", {"prod": stack.env_config()})
    cases = [
        (("fix", "--env", "prod", "--json"), {}, "environments.prod.database_dsn"),  # the DSN variable is not set
        (("check", "--env", "nope", "--json"), stack.env_vars, "environments"),
        (("fix", "--json"), stack.env_vars, "--env"),  # argparse refuses: --env is required
        (("fix", "--env", "prod", "--retries", "0", "--json"), stack.env_vars, "--retries"),
        (("check", "--json", "--no-such-flag"), stack.env_vars, "--no-such-flag"),
    ]
    for args, env, key in cases:
        proc = await acli(config, *args, env={f"DSN_{stack.db.upper()}": "", **env})
        assert proc.returncode == 2, (args, proc.stdout, proc.stderr)
        doc = json.loads(proc.stdout)  # exactly one document, nothing else on stdout
        assert set(doc) == {"error", "key"} and doc["key"] == key and doc["error"], (args, doc)
        assert "Traceback" not in proc.stderr
    missing = await acli(tmp_path / "absent.yaml", "check", "--json")
    assert missing.returncode == 2 and json.loads(missing.stdout)["key"] is None
    assert "config file not found" in json.loads(missing.stdout)["error"]
    pasted = write_config(
        tmp_path / "p.yaml", {"prod": stack.env_config(database_dsn={"env": stack.dsn("ops", CANARY)})}
    )
    leak = await acli(pasted, "check", "--json")  # a DSN pasted where the variable's name belongs
    assert leak.returncode == 2 and json.loads(leak.stdout)["key"] == "environments.prod.database_dsn"
    assert CANARY not in leak.stdout + leak.stderr
    text = await acli(config, "check", "--env", "nope")  # without --json: one line on stderr, stdout empty
    assert text.returncode == 2 and not text.stdout and "unknown environment 'nope'" in text.stderr


async def test_a_secret_in_an_error_never_reaches_the_output(make_stack, tmp_path):
    stack = make_stack()
    stack.postgrest.stop()

    async def echo_path(request: web.Request) -> web.Response:  # a proxy that quotes the path in its error
        return web.json_response({"message": f"no route for {request.path_qs}"}, status=404)

    async with LocalServer.catch_all(echo_path) as base:
        config = write_config(
            tmp_path / "c.yaml", {"prod": stack.env_config()}, discord={"webhook_url": {"env": "HOOK"}}
        )
        hook = f"{base}/api/webhooks/9/tok-{CANARY}"
        proc = await acli(config, "fix", "--env", "prod", "--verbose", env={**stack.env_vars, "HOOK": hook})
    assert proc.returncode == 1 and "Discord alert failed: webhook rejected the post: HTTP 404" in proc.stdout
    assert "/api/webhooks/9/***" in proc.stdout and "HTTP Request: POST" in proc.stderr  # httpx's line, scrubbed
    assert CANARY not in proc.stdout + proc.stderr


def test_a_reader_that_goes_away_gets_no_traceback(tmp_path):
    """`pgrst-ops check --json | head -c 1`: the pipe closes before the document is written."""
    config = tmp_path / "config.yaml"
    config.write_text("environments:\n  dev:\n    rest_url: http://127.0.0.1:9\n    probe_tables: [a, b, c]\n")
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before a byte is written
    buffered = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}  # as a user's shell has it
    try:
        for environ in (os.environ, buffered):  # unbuffered, a write fails; buffered, the flush at exit
            for command in ([sys.executable, "-m", "bot.cli"], entry_points()[0]):
                done = subprocess.run(
                    [*command, "--config", str(config), "check", "--json"],
                    stdout=write_end,
                    stderr=subprocess.PIPE,
                    text=True,
                    timeout=60,
                    env=environ,
                )
                assert done.returncode == 1, (command, done.stderr)
                assert "Traceback" not in done.stderr and "BrokenPipeError" not in done.stderr
    finally:
        os.close(write_end)


def entry_points() -> list[list[str]]:
    """Both commands as installed: the `pgrst-ops` console script next to this Python, and `python -m bot`."""
    script = Path(sys.executable).with_name("pgrst-ops")
    assert script.exists(), f"{script}: the package is not installed in this environment (pip install -e .)"
    return [[str(script)], [sys.executable, "-m", "bot"]]


def test_version_comes_from_the_package_metadata():
    expected = f"pgrst-ops {importlib.metadata.version('pgrst-ops')}"
    for command in entry_points():
        proc = subprocess.run([*command, "--version"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == expected, (command, proc.stdout, proc.stderr)


def test_help_lists_exit_codes_and_two_examples():
    expected_codes = {"pgrst-ops": ["0", "1", "2"], "python -m bot": ["0", "1", "2", "3"]}  # 3: a lost lease
    for command, prog in zip(entry_points(), ("pgrst-ops", "python -m bot"), strict=True):
        proc = subprocess.run([*command, "--help"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
        text = proc.stdout
        codes = text.split("exit codes:\n", 1)[1].split("\n\n", 1)[0].splitlines()
        assert [line.split()[0] for line in codes] == expected_codes[prog], text
        examples = text.split("examples:\n", 1)[1].splitlines()
        assert len([line for line in examples if line.startswith(f"  {prog} ")]) == 2, text
        assert "usage or configuration error" in text
