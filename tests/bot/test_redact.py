"""The redaction layer: every spelling of a secret read from the config is removed from logs and text."""

from __future__ import annotations

import io
import logging
from urllib.parse import quote

from bot.config import SecretRef, read_optional_secret
from bot.redact import MASK, install_log_filter, redact, register, scrub, scrub_payload

PASSWORD = "p@ss w/rd:Zx81"
DSN = f"postgresql://ops:{quote(PASSWORD, safe='')}@db.example:5432/app"
HOOK_TOKEN = "AbC-webhookTOKEN_123456"
HOOK = f"https://discord.com/api/webhooks/4242/{HOOK_TOKEN}"


def test_a_dsn_is_removed_whole_and_its_password_in_every_encoding():
    text = f"connect {DSN} failed; password {PASSWORD!r}, encoded {quote(PASSWORD, safe='')}, plus {quote(PASSWORD)}"
    out = redact(text, DSN)
    assert PASSWORD not in out and quote(PASSWORD, safe="") not in out and quote(PASSWORD) not in out
    assert "db.example" not in out and out.startswith(f"connect {MASK} failed")
    kv = "host=db user=ops password='k3y=value!' dbname=app"
    assert "k3y=value!" not in redact(f"error for {kv} (k3y=value!)", kv)


def test_secrets_read_from_the_config_register_themselves_with_their_token_part():
    read_optional_secret(SecretRef(env="REDACT_TEST_HOOK"), {"REDACT_TEST_HOOK": HOOK})
    out = scrub(f"404 no route for /api/webhooks/4242/{HOOK_TOKEN}?wait=true; url {HOOK}")
    assert HOOK_TOKEN not in out and HOOK not in out and "/api/webhooks/4242/" in out
    payload = scrub_payload({"content": f"see {HOOK}", "embeds": [{"fields": [{"value": HOOK_TOKEN}]}], "n": 3})
    assert payload == {"content": f"see {MASK}", "embeds": [{"fields": [{"value": MASK}]}], "n": 3}


def test_the_log_filter_scrubs_arguments_messages_and_tracebacks():
    register(DSN)
    stream = io.StringIO()
    logger = logging.getLogger("test_redact")
    logger.propagate, logger.level = False, logging.INFO
    handler = logging.StreamHandler(stream)
    logger.addHandler(handler)
    install_log_filter(logger)
    install_log_filter(logger)  # once per handler, however often start-up runs it
    try:
        logger.info("connecting to %s", DSN)
        logger.warning(f"password is {PASSWORD}")
        try:
            raise ValueError(f"bad dsn {DSN}")
        except ValueError:
            logger.exception("failed")
    finally:
        logger.removeHandler(handler)
    text = stream.getvalue()
    assert PASSWORD not in text and quote(PASSWORD, safe="") not in text and "db.example" not in text
    assert text.count(MASK) >= 3 and "Traceback" in text and "ValueError: bad dsn ***" in text
    assert len(handler.filters) == 1


def test_short_values_are_not_masked_everywhere():
    register("ops")  # a three-letter password would blank out ordinary words in every line
    assert scrub("the ops channel") == "the ops channel"
