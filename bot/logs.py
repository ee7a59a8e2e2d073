"""Logging set-up for `python -m bot`: one handler on stderr, text or JSON lines, secrets filtered out.

Text lines use the console's one time format (UTC); `--log-format json` makes every record one JSON object
(time, level, logger, message, and the traceback when there is one), so a log shipper never sees a mix.
"""

from __future__ import annotations

import json
import logging
import time
from datetime import UTC, datetime
from typing import TextIO

from bot.messages.console_text import TIME_FORMAT
from bot.redact import install_log_filter

LOG_FORMATS = ("text", "json")


class TextFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt=TIME_FORMAT)
        self.converter = time.gmtime  # TIME_FORMAT says UTC


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        doc = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            doc["exc"] = self.formatException(record.exc_info)
        elif record.exc_text:
            doc["exc"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False)


def setup_logging(log_format: str, level: int, stream: TextIO) -> None:
    """Replace the root logger's handlers with one on `stream` in `log_format`, then the secret filter."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    install_log_filter()  # no secret in any log line, whoever logs it
    logging.getLogger("discord").setLevel(logging.WARNING)
    logging.getLogger("httpx").setLevel(logging.WARNING)
