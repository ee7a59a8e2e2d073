"""Reading the config file: size and nesting limits, duplicate keys and `key: #...` values refused, YAML aliases
bounded, then validation; every failure is one ConfigError with a one-line message naming the key or line
(the CLI exits 2 on it).

Imports PyYAML, pydantic and the config's errors and settings.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from bot.config.errors import ConfigError, shown_value
from bot.config.settings import Settings

DEFAULT_CONFIG_PATH = "config.yaml"
CONFIG_PATH_ENV = "PGRST_OPS_CONFIG"

# A config file is a few KB; these bound what a hostile or broken one can cost before validation.
MAX_CONFIG_BYTES = 1024 * 1024
MAX_NESTING = 16  # the deepest real key (environments.<env>.maintenance.<n>.start) is 5 levels down
MAX_NODES = 100_000  # YAML aliases count each time they are used: no "billion laughs"
MAX_ERRORS_SHOWN = 5


def _not_a_number(item: Any) -> str | None:
    if item["type"] not in ("int_type", "float_type"):
        return None
    kind = "a whole number" if item["type"] == "int_type" else "a number"
    if isinstance(item.get("input"), bool):
        return f"expected {kind}, not true/false"
    if isinstance(item.get("input"), str):
        # YAML 1.1 reads 1e308 (no dot, unsigned exponent) as text.
        return f"expected {kind}, not text (no quotes; YAML reads 1e3 as text, write 1000 or 1.0e+3)"
    if isinstance(item.get("input"), float) and item["type"] == "int_type":
        return "expected a whole number"
    return None


def _format_validation_error(err: ValidationError) -> str:
    """One line: each problem as `key.path: what is wrong`. Never the value given (it may be a secret)."""
    lines = []
    for item in err.errors():
        path = ".".join(shown_value(p) for p in item["loc"]) or "(top level)"
        if item["type"] == "extra_forbidden":
            message = "unknown key"
        elif item["type"] == "missing":
            message = "required key is missing"
        else:
            message = _not_a_number(item) or item["msg"].removeprefix("Value error, ")
        lines.append(f"{path}: {message}")
    shown = lines[:MAX_ERRORS_SHOWN]
    if len(lines) > MAX_ERRORS_SHOWN:
        shown.append(f"and {len(lines) - MAX_ERRORS_SHOWN} more")
    return " ".join("; ".join(shown).split())  # one line whatever the messages hold


def parse_settings(data: Any, source: str = "config") -> Settings:
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping at the top level (with an 'environments' key)")
    try:
        return Settings.model_validate(data)
    except ValidationError as err:
        first = ".".join(str(p) for p in err.errors()[0]["loc"]) if err.errors() else None
        raise ConfigError(f"{source}: {_format_validation_error(err)}", key=first or None) from None


def default_config_path() -> Path:
    return Path(os.environ.get(CONFIG_PATH_ENV) or DEFAULT_CONFIG_PATH)


class _Refused(Exception):
    """A hazard found while reading the YAML; the message names the key or the line, `key` the dotted key."""

    def __init__(self, message: str, *, key: str | None = None) -> None:
        super().__init__(message)
        self.key = key


_MERGE_TAG = "tag:yaml.org,2002:merge"
_NULL_TAG = "tag:yaml.org,2002:null"

# `key: #ops-alerts` is a comment: the value is silently empty.
_COMMENT_AS_VALUE_RE = re.compile(r"\s*:[ \t]+#(\S)")


class _ConfigLoader(yaml.SafeLoader):
    """SafeLoader that stops composing at MAX_NESTING levels (deeper input would exhaust Python's stack)."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self._depth += 1
        try:
            if self._depth > MAX_NESTING:
                line = self.peek_event().start_mark.line + 1
                raise _Refused(f"nested deeper than {MAX_NESTING} levels at line {line}")
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


def _check_nodes(root: yaml.Node, lines: list[str]) -> None:
    """Refuse what YAML would accept silently: a repeated key (the last wins), a `#...` value read as a
    comment, and aliases that expand beyond MAX_NODES (or into themselves)."""
    stack: list[tuple[yaml.Node, str, int]] = [(root, "", 0)]
    visited = 0
    while stack:
        node, path, depth = stack.pop()
        visited += 1
        if depth > MAX_NESTING:
            raise _Refused(f"YAML aliases nest deeper than {MAX_NESTING} levels (or refer to themselves)")
        if visited > MAX_NODES:
            raise _Refused(f"YAML aliases expand to more than {MAX_NODES} values")
        if isinstance(node, yaml.SequenceNode):
            stack += [(child, f"{path}.{n}" if path else str(n), depth + 1) for n, child in enumerate(node.value)]
        elif isinstance(node, yaml.MappingNode):
            first_line: dict[str, int] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    stack.append((value_node, path, depth + 1))
                    continue
                if not isinstance(key_node, yaml.ScalarNode):
                    raise _Refused(f"line {key_node.start_mark.line + 1}: keys must be plain names")
                key, line = key_node.value, key_node.start_mark.line + 1
                where = f"{path}.{shown_value(key)}" if path else shown_value(key)
                if key in first_line:
                    raise _Refused(
                        f"{where}: duplicate key at lines {first_line[key]} and {line} (the last would win)", key=where
                    )
                first_line[key] = line
                _check_empty_value(where, key, key_node, value_node, lines)
                stack.append((value_node, where, depth + 1))


def _check_empty_value(where: str, key: str, key_node: yaml.Node, value_node: yaml.Node, lines: list[str]) -> None:
    if not (isinstance(value_node, yaml.ScalarNode) and value_node.tag == _NULL_TAG and value_node.value == ""):
        return
    mark = key_node.end_mark
    line = lines[mark.line] if mark.line < len(lines) else ""
    if not _COMMENT_AS_VALUE_RE.match(line[mark.column :]):
        return
    if key.endswith("channel_id"):
        hint = "give the channel's numeric id (Discord: right-click the channel, Copy Channel ID), not #name"
    else:
        hint = 'quote it ("#...") if it is a value'
    raise _Refused(f"{where}: YAML reads '#...' as a comment, so the value is empty; {hint}", key=where)


def _yaml_problem(err: yaml.YAMLError, text: str) -> str:
    """The parser's complaint with its line, and a hint for the usual slips."""
    if isinstance(err, yaml.reader.ReaderError):
        line = text.count("\n", 0, err.position) + 1
        return f"YAML syntax error at line {line}: character #x{err.character:04x} is not allowed in YAML"
    mark = getattr(err, "problem_mark", None)
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
    problem = getattr(err, "problem", None) or "invalid YAML"
    hint = ""
    if "'\\t'" in problem:  # PyYAML quotes the character with repr()
        hint = ": indent with spaces, not tabs"
    elif "'@'" in problem or "'`'" in problem:
        hint = ": a value may not start with '@' or '`' unless quoted (a Discord role: give its id or plain name)"
    return f"YAML syntax error{where}: {problem}{hint}"


def _read_yaml(path: Path) -> Any:
    try:
        with path.open("rb") as handle:
            raw = handle.read(MAX_CONFIG_BYTES + 1)
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found (use --config or ${CONFIG_PATH_ENV})") from None
    except OSError as err:
        raise ConfigError(f"{path}: cannot read config file ({err.strerror})") from None
    if len(raw) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES // 1024} KiB: not a pgrst-ops config file")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as err:
        line = raw.count(b"\n", 0, err.start) + 1
        raise ConfigError(
            f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at line {line}); save the file as UTF-8"
        ) from None
    try:
        return _compose_checked(text)
    except _Refused as err:
        raise ConfigError(f"{path}: {err}", key=err.key) from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}: {_yaml_problem(err, text)}") from None


def _compose_checked(text: str) -> Any:
    loader = _ConfigLoader(text)  # checks for unprintable characters at once
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _check_nodes(node, text.splitlines() or [""])
        return loader.construct_document(node)
    finally:
        loader.dispose()


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and validate the config file; every failure is a ConfigError with a one-line message."""
    path = Path(path) if path is not None else default_config_path()
    return parse_settings(_read_yaml(path), str(path))
