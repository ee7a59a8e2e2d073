"""Discord's message / embed / component / command limits, answered as 400 50035 Invalid Form Body."""

from __future__ import annotations

import re
from typing import Any

from .models import FLAG_IS_COMPONENTS_V2, DiscordError, iter_components

CONTENT_MAX = 2000
EMBEDS_MAX = 10
EMBED_TOTAL_MAX = 6000
EMBED_TITLE_MAX = 256
EMBED_DESCRIPTION_MAX = 4096
EMBED_FIELDS_MAX = 25
EMBED_FIELD_NAME_MAX = 256
EMBED_FIELD_VALUE_MAX = 1024
EMBED_FOOTER_MAX = 2048
EMBED_AUTHOR_MAX = 256
ACTION_ROWS_MAX = 5
ROW_BUTTONS_MAX = 5
CUSTOM_ID_MAX = 100
BUTTON_LABEL_MAX = 80
SELECT_OPTIONS_MAX = 25
SELECT_PLACEHOLDER_MAX = 150
V2_COMPONENTS_MAX = 40
CHOICES_MAX = 25
COMMAND_NAME_RE = re.compile(r"^[-_\w]{1,32}$")


class _Errors:
    def __init__(self) -> None:
        self.tree: dict[str, Any] = {}
        self.flat: list[str] = []

    def add(self, path: list[str | int], code: str, message: str) -> None:
        node = self.tree
        for part in path:
            node = node.setdefault(str(part), {})
        node.setdefault("_errors", []).append({"code": code, "message": message})
        self.flat.append(f"{'.'.join(map(str, path))}: {message}")

    def max_len(self, path: list[str | int], value: Any, limit: int) -> int:
        if value is None:
            return 0
        text = str(value)
        if len(text) > limit:
            self.add(path, "BASE_TYPE_MAX_LENGTH", f"Must be {limit} or fewer in length.")
        return len(text)

    def raise_if_any(self) -> None:
        if self.flat:
            raise DiscordError(400, 50035, "Invalid Form Body", self.tree)


def validate_message(
    payload: dict[str, Any],
    *,
    require_content: bool,
    has_files: bool = False,
    partial: bool = False,
) -> None:
    """Validate a create/edit message payload (channel message, webhook, interaction callback data).

    partial=True for edits: only the fields present are checked and emptiness is not enforced.
    """
    errs = _Errors()
    content = payload.get("content")
    if content is not None and not isinstance(content, str):
        content = str(content)
    errs.max_len(["content"], content, CONTENT_MAX)

    embeds = payload.get("embeds")
    if embeds is None and payload.get("embed") is not None:  # legacy single-embed field
        embeds = [payload["embed"]]
    embeds = embeds or []
    if len(embeds) > EMBEDS_MAX:
        errs.add(["embeds"], "BASE_TYPE_MAX_LENGTH", f"Must be {EMBEDS_MAX} or fewer in length.")
    total = 0
    for i, embed in enumerate(embeds):
        total += _validate_embed(errs, ["embeds", i], embed or {})
    if total > EMBED_TOTAL_MAX:
        errs.add(["embeds"], "MAX_EMBED_SIZE_EXCEEDED", f"Embed size exceeds maximum size of {EMBED_TOTAL_MAX}")

    components = payload.get("components") or []
    flags = int(payload.get("flags") or 0)
    _validate_components(errs, components, v2=bool(flags & FLAG_IS_COMPONENTS_V2))

    errs.raise_if_any()

    if require_content and not partial:
        has_any = bool(
            (content or "").strip()
            or embeds
            or components
            or has_files
            or payload.get("sticker_ids")
            or payload.get("poll")
        )
        if not has_any:
            raise DiscordError(400, 50006, "Cannot send an empty message")


def _validate_embed(errs: _Errors, path: list[str | int], embed: dict[str, Any]) -> int:
    total = 0
    total += errs.max_len([*path, "title"], embed.get("title"), EMBED_TITLE_MAX)
    total += errs.max_len([*path, "description"], embed.get("description"), EMBED_DESCRIPTION_MAX)
    fields = embed.get("fields") or []
    if len(fields) > EMBED_FIELDS_MAX:
        errs.add([*path, "fields"], "BASE_TYPE_MAX_LENGTH", f"Must be {EMBED_FIELDS_MAX} or fewer in length.")
    for j, f in enumerate(fields):
        name, value = f.get("name"), f.get("value")
        if name is None or str(name) == "":
            errs.add([*path, "fields", j, "name"], "BASE_TYPE_REQUIRED", "This field is required")
        if value is None or str(value) == "":
            errs.add([*path, "fields", j, "value"], "BASE_TYPE_REQUIRED", "This field is required")
        total += errs.max_len([*path, "fields", j, "name"], name, EMBED_FIELD_NAME_MAX)
        total += errs.max_len([*path, "fields", j, "value"], value, EMBED_FIELD_VALUE_MAX)
    footer = embed.get("footer") or {}
    total += errs.max_len([*path, "footer", "text"], footer.get("text"), EMBED_FOOTER_MAX)
    author = embed.get("author") or {}
    total += errs.max_len([*path, "author", "name"], author.get("name"), EMBED_AUTHOR_MAX)
    return total


def _validate_components(errs: _Errors, components: list[dict[str, Any]], *, v2: bool) -> None:
    seen_ids: set[str] = set()
    if v2:
        if len(iter_components(components)) > V2_COMPONENTS_MAX:
            errs.add(["components"], "BASE_TYPE_MAX_LENGTH", f"Must be {V2_COMPONENTS_MAX} or fewer in length.")
    elif len(components) > ACTION_ROWS_MAX:
        errs.add(["components"], "BASE_TYPE_MAX_LENGTH", f"Must be {ACTION_ROWS_MAX} or fewer in length.")
    for i, row in enumerate(components):
        if not v2 and row.get("type") != 1:
            errs.add(["components", i, "type"], "UNION_TYPE_CHOICES", "Top-level components must be action rows")
            continue
        if row.get("type") == 1:
            children = row.get("components") or []
            n_buttons = sum(1 for c in children if c.get("type") == 2)
            n_selects = sum(1 for c in children if c.get("type") in (3, 5, 6, 7, 8))
            if n_buttons > ROW_BUTTONS_MAX or len(children) > ROW_BUTTONS_MAX:
                errs.add(
                    ["components", i, "components"],
                    "BASE_TYPE_MAX_LENGTH",
                    f"Must be {ROW_BUTTONS_MAX} or fewer in length.",
                )
            if n_selects and len(children) > 1:
                errs.add(
                    ["components", i, "components"],
                    "COMPONENT_LAYOUT_WIDTH_EXCEEDED",
                    "The specified component exceeds the maximum width",
                )
            if not children:
                errs.add(["components", i, "components"], "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
        for j, comp in enumerate(iter_components([row])[1:]):
            _validate_component(errs, ["components", i, "components", j], comp, seen_ids)


def _validate_component(errs: _Errors, path: list[str | int], comp: dict[str, Any], seen: set[str]) -> None:
    ctype = comp.get("type")
    custom_id = comp.get("custom_id")
    if custom_id is not None:
        errs.max_len([*path, "custom_id"], custom_id, CUSTOM_ID_MAX)
        if custom_id in seen:
            errs.add([*path, "custom_id"], "COMPONENT_CUSTOM_ID_DUPLICATED", "Component custom id cannot be duplicated")
        seen.add(custom_id)
    if ctype == 2:  # button
        style = comp.get("style")
        errs.max_len([*path, "label"], comp.get("label"), BUTTON_LABEL_MAX)
        if style == 5:
            if not comp.get("url"):
                errs.add([*path, "url"], "BASE_TYPE_REQUIRED", "This field is required")
            if custom_id:
                errs.add(
                    [*path, "custom_id"], "COMPONENT_LINK_BUTTON_CUSTOM_ID", "Link buttons cannot have a custom id"
                )
        elif style == 6:
            if not comp.get("sku_id"):
                errs.add([*path, "sku_id"], "BASE_TYPE_REQUIRED", "This field is required")
        elif not custom_id:
            errs.add([*path, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
        if style != 6 and not comp.get("label") and not comp.get("emoji"):
            errs.add([*path, "label"], "BASE_TYPE_REQUIRED", "A label or an emoji is required")
    elif ctype in (3, 5, 6, 7, 8):  # selects
        if not custom_id:
            errs.add([*path, "custom_id"], "BASE_TYPE_REQUIRED", "This field is required")
        errs.max_len([*path, "placeholder"], comp.get("placeholder"), SELECT_PLACEHOLDER_MAX)
        if ctype == 3:
            options = comp.get("options") or []
            if not options:
                errs.add([*path, "options"], "BASE_TYPE_MIN_LENGTH", "Must be 1 or more in length.")
            if len(options) > SELECT_OPTIONS_MAX:
                errs.add(
                    [*path, "options"], "BASE_TYPE_MAX_LENGTH", f"Must be {SELECT_OPTIONS_MAX} or fewer in length."
                )
            for k, opt in enumerate(options):
                errs.max_len([*path, "options", k, "label"], opt.get("label"), 100)
                errs.max_len([*path, "options", k, "value"], opt.get("value"), 100)
                errs.max_len([*path, "options", k, "description"], opt.get("description"), 100)


def validate_choices(data: dict[str, Any]) -> None:
    errs = _Errors()
    choices = data.get("choices") or []
    if len(choices) > CHOICES_MAX:
        errs.add(["data", "choices"], "BASE_TYPE_MAX_LENGTH", f"Must be {CHOICES_MAX} or fewer in length.")
    for i, ch in enumerate(choices):
        if not ch.get("name"):
            errs.add(["data", "choices", i, "name"], "BASE_TYPE_REQUIRED", "This field is required")
        errs.max_len(["data", "choices", i, "name"], ch.get("name"), 100)
        if isinstance(ch.get("value"), str):
            errs.max_len(["data", "choices", i, "value"], ch.get("value"), 100)
    errs.raise_if_any()


def validate_commands(commands: list[dict[str, Any]]) -> None:
    """Bulk-overwrite validation (names, descriptions, option counts, choices)."""
    errs = _Errors()
    seen: set[tuple[str, int]] = set()
    for i, cmd in enumerate(commands):
        ctype = int(cmd.get("type", 1))
        name = str(cmd.get("name", ""))
        if ctype == 1 and (not COMMAND_NAME_RE.match(name) or name != name.lower()):
            errs.add([i, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Command name is invalid")
        if (name, ctype) in seen:
            errs.add(
                [i, "name"], "APPLICATION_COMMANDS_DUPLICATE_NAME", f"Application command names must be unique: {name}"
            )
        seen.add((name, ctype))
        if ctype == 1:
            desc = str(cmd.get("description", ""))
            if not 1 <= len(desc) <= 100:
                errs.add([i, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        _validate_options(errs, [i, "options"], cmd.get("options") or [])
    errs.raise_if_any()


def _validate_options(errs: _Errors, path: list[str | int], options: list[dict[str, Any]]) -> None:
    if len(options) > 25:
        errs.add(path, "BASE_TYPE_MAX_LENGTH", "Must be 25 or fewer in length.")
    seen_optional = False
    for j, opt in enumerate(options):
        name = str(opt.get("name", ""))
        if not COMMAND_NAME_RE.match(name) or name != name.lower():
            errs.add([*path, j, "name"], "APPLICATION_COMMAND_INVALID_NAME", "Option name is invalid")
        desc = str(opt.get("description", ""))
        if not 1 <= len(desc) <= 100:
            errs.add([*path, j, "description"], "BASE_TYPE_BAD_LENGTH", "Must be between 1 and 100 in length.")
        if opt.get("type") in (1, 2):
            _validate_options(errs, [*path, j, "options"], opt.get("options") or [])
            continue
        if opt.get("required"):
            if seen_optional:
                errs.add(
                    [*path, j, "required"],
                    "APPLICATION_COMMAND_OPTIONS_REQUIRED_INVALID",
                    "Required options must be placed before non-required options",
                )
        else:
            seen_optional = True
        if len(opt.get("choices") or []) > CHOICES_MAX:
            errs.add([*path, j, "choices"], "BASE_TYPE_MAX_LENGTH", f"Must be {CHOICES_MAX} or fewer in length.")
        if opt.get("choices") and opt.get("autocomplete"):
            errs.add([*path, j, "autocomplete"], "AUTOCOMPLETE_CHOICES", "Autocomplete cannot be used with choices")
