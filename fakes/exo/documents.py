"""YAML documents checked against pydantic models, with errors that name file, line, key and value.

Tenant files and scenario files both go through ``load_document``: the YAML is parsed once
into a node tree (for line numbers) and once into plain data (for the model), and every
validation error is pointed back at the line of the key or value it is about.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from .errors import ConfigError, ConfigErrors

M = TypeVar("M", bound=BaseModel)


def format_path(loc: tuple[int | str, ...]) -> str:
    """``('mailboxes', 1, 'send_as', 0)`` -> ``mailboxes[1].send_as[0]``."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def _node_at(root: yaml.Node | None, loc: tuple[int | str, ...]) -> tuple[yaml.Node | None, bool]:
    """The deepest node along ``loc``, and whether the whole path was found."""
    node = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if key.value == part:
                    node = value
                    break
            else:
                return node, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int):
            if part >= len(node.value):
                return node, False
            node = node.value[part]
        else:
            return node, False
    return node, True


def _key_line(root: yaml.Node | None, loc: tuple[int | str, ...]) -> int | None:
    """Line (1-based) of the key for a mapping entry, else of the node itself."""
    if not loc:
        return None if root is None else root.start_mark.line + 1
    parent, found = _node_at(root, loc[:-1])
    if found and isinstance(parent, yaml.MappingNode):
        for key, _value in parent.value:
            if key.value == loc[-1]:
                return int(key.start_mark.line) + 1
    node, _ = _node_at(root, loc)
    return None if node is None else node.start_mark.line + 1


def _value_at(data: Any, loc: tuple[int | str, ...]) -> tuple[Any, bool]:
    for part in loc:
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            return None, False
    return data, True


def _normalize(data: Any, loc: tuple[int | str, ...]) -> tuple[int | str, ...]:
    """Drop the tags pydantic adds for tagged unions (``expect.0.stored.folder``): they name a
    model, not a key of the document."""
    out: list[int | str] = []
    for part in loc:
        if isinstance(data, dict) and isinstance(part, str) and part not in data:
            continue  # a union tag, or the missing key itself (kept below if it is the last)
        out.append(part)
        try:
            data = data[part]
        except (KeyError, IndexError, TypeError):
            data = None
    if loc and loc[-1] not in out:
        out.append(loc[-1])
    return tuple(out)


def _message(err: dict[str, Any]) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key"
    if kind == "missing":
        return "is required"
    if kind == "union_tag_invalid":
        return f"is not one of {err.get('ctx', {}).get('expected_tags', '')}"
    msg = str(err.get("msg", "invalid"))
    for prefix in ("Value error, ", "Assertion failed, "):
        if msg.startswith(prefix):
            msg = msg[len(prefix) :]
    return msg


MAX_DEPTH = 32  # no tenant or scenario nests deeper; a hostile file may


class _StrictLoader(yaml.SafeLoader):
    """YAML as a configuration file needs it, refusing what only hides mistakes or does harm:
    a key given twice (the second would silently win), aliases (``*name``: one line can expand
    into gigabytes), and nesting deeper than ``MAX_DEPTH``."""

    source = "<string>"
    depth = 0

    def _refuse(self, message: str, mark: yaml.Mark | None) -> ConfigError:
        return ConfigError(message, source=self.source, line=None if mark is None else mark.line + 1)

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise self._refuse(f"aliases (*{event.anchor}) are not allowed: write the value out",
                               event.start_mark)
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                raise self._refuse(f"nested deeper than {MAX_DEPTH} levels",
                                   self.peek_event().start_mark)  # type: ignore[no-untyped-call]
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, int] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if isinstance(key, list | dict):
                raise self._refuse("a key must be a plain value", key_node.start_mark)
            if key in seen:
                raise ConfigError(f"given twice (first on line {seen[key]})", source=self.source,
                                  line=key_node.start_mark.line + 1, path=str(key))
            seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)


def parse_yaml(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    loader = _StrictLoader(text)
    loader.source = source
    try:
        node = loader.get_single_node()
        data = None if node is None else loader.construct_document(node)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = None if mark is None else mark.line + 1
        raise ConfigError(f"not valid YAML: {exc.problem or exc}", source=source, line=line) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {exc}", source=source) from None
    finally:
        loader.dispose()
    return data, node


def read_text(path: Any, what: str) -> str:
    """A configuration file as UTF-8 text, or a ``ConfigError`` that says why it is not."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"cannot read the {what}: {exc.strerror}", source=str(path)) from None
    try:
        text: str = raw.decode("utf-8")
        return text
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"not UTF-8 text (byte 0x{raw[exc.start]:02x})", source=str(path), line=line) from None


def validate(model: type[M], data: Any, node: yaml.Node | None, source: str) -> M:
    """Validate plain data against ``model``; errors point at lines of ``node``'s document."""
    if data is None:
        raise ConfigError("the document is empty", source=source, line=1)
    if not isinstance(data, dict):
        raise ConfigError("the document must be a mapping of keys", source=source, line=1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems: list[ConfigError] = []
        errors = exc.errors()
        inner = {tuple(e["loc"][:-1]) for e in errors if e["loc"]}
        for err in errors:
            if err.get("type") == "too_short" and tuple(err["loc"]) in inner:
                continue  # a list left short by its own bad item: that item's error says it all
            loc = _normalize(data, tuple(p for p in err["loc"] if isinstance(p, (int, str))))
            if not loc:  # a rule across the document: its message names the key it is about
                problems.append(_document_error(_message(dict(err)), node, source))
                continue
            if err.get("type") == "union_tag_invalid":  # name the tag key itself: expect[0].check
                loc += (str(err.get("ctx", {}).get("discriminator", "")).strip("'"),)
            value, has_value = _value_at(data, loc)
            if err.get("type") in ("missing", "extra_forbidden"):
                has_value = False  # an unknown key may hold anything: a password under a name we do not know
            problems.append(
                ConfigError(
                    _message(dict(err)),
                    source=source,
                    line=_key_line(node, loc),
                    path=format_path(loc),
                    value=value,
                    has_value=has_value,
                )
            )
        raise (problems[0] if len(problems) == 1 else ConfigErrors(problems)) from None


_NAMED = re.compile(r"^(?P<path>[A-Za-z_][\w.\[\]]*)=(?P<value>'[^']*'|\S+) (?P<message>.+)$")


def _document_error(message: str, node: yaml.Node | None, source: str) -> ConfigError:
    """``mailboxes[1].address='a@b.c' is listed twice`` -> that key's line, path and value, and
    never the whole document (it holds passwords)."""
    match = _NAMED.match(message)
    if match is None:
        return ConfigError(message, source=source)
    loc: list[int | str] = []
    for part in re.findall(r"[^.\[\]]+|\[\d+\]", match["path"]):
        loc.append(int(part[1:-1]) if part.startswith("[") else part)
    value = match["value"].strip("'")
    return ConfigError(match["message"], source=source, line=_key_line(node, tuple(loc)), path=match["path"],
                       value=value, has_value=True)


def load_document(model: type[M], text: str, source: str) -> M:
    data, node = parse_yaml(text, source)
    return validate(model, data, node, source)
