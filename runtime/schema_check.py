"""A small validator for the subset of JSON Schema (draft 2020-12) that ``manifest.schema.json`` uses.

The device runtime carries no ``jsonschema`` dependency, so it checks manifests with this instead; the test suite
checks that both accept and reject the same documents. Keywords: ``$ref`` (local ``#/$defs/...``), ``type``,
``const``, ``enum``, ``anyOf``, ``properties``, ``required``, ``additionalProperties``, ``items``, ``minItems``,
``maxItems``, ``minimum``, ``maximum``, ``exclusiveMinimum``, ``minLength``, ``maxLength``, ``pattern``.
Any other keyword in a schema is refused, so the schema cannot silently say more than this file checks.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from lstm_edge.runtime.errors import ManifestError

KNOWN_KEYWORDS = frozenset({
    "$schema", "$id", "$defs", "title", "description", "$ref", "type", "const", "enum", "anyOf", "properties",
    "required", "additionalProperties", "items", "minItems", "maxItems", "minimum", "maximum", "exclusiveMinimum",
    "minLength", "maxLength", "pattern"})
MAX_DEPTH = 64


class SchemaViolation(ManifestError):
    """A document does not match its schema; ``path`` names the field (``files[0].bytes``)."""

    def __init__(self, path: str, expected: str, got: Any) -> None:
        self.path = path
        self.expected = expected
        self.got = got
        super().__init__(f"manifest field {path or '(top level)'}: expected {expected}, got {_describe(got)}")


class _Text(str):
    """A description of what came, printed as is (not as a JSON value)."""


def _describe(value: Any) -> str:
    if isinstance(value, _Text):
        return str(value)
    text = repr(value)
    if len(text) > 60:
        text = text[:57] + "..."
    return f"{_json_type(value)} {text}"


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, Mapping):
        return "object"
    return type(value).__name__


def _is_type(value: Any, name: str) -> bool:
    kind = _json_type(value)
    if name == "number":
        return kind in ("integer", "number") and math.isfinite(value)
    if name == "integer":
        return kind == "integer" or (kind == "number" and math.isfinite(value) and float(value).is_integer())
    return kind == name


def _equal(a: Any, b: Any) -> bool:
    """JSON equality: 1 == 1.0, but true != 1."""
    if isinstance(a, bool) or isinstance(b, bool):
        return isinstance(a, bool) and isinstance(b, bool) and a == b
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return a == b
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_equal(x, y) for x, y in zip(a, b))
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        return set(a) == set(b) and all(_equal(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


class SchemaValidator:
    """Validates documents against one schema document (its ``$defs`` resolve ``$ref``)."""

    def __init__(self, schema: Mapping[str, Any]) -> None:
        self.schema = schema
        self._patterns: dict[str, re.Pattern[str]] = {}
        self._check_keywords(schema, "#", 0)

    def _check_keywords(self, schema: Any, where: str, depth: int) -> None:
        if depth > MAX_DEPTH or not isinstance(schema, Mapping):
            raise ManifestError(f"schema {where}: expected an object nested at most {MAX_DEPTH} deep")
        unknown = set(schema) - KNOWN_KEYWORDS
        if unknown:
            raise ManifestError(f"schema {where}: keywords {sorted(unknown)} are not supported by this validator")
        for key in ("properties", "$defs"):
            for name, sub in schema.get(key, {}).items():
                self._check_keywords(sub, f"{where}/{key}/{name}", depth + 1)
        for sub in schema.get("anyOf", []):
            self._check_keywords(sub, f"{where}/anyOf", depth + 1)
        for key in ("items", "additionalProperties"):
            if isinstance(schema.get(key), Mapping):
                self._check_keywords(schema[key], f"{where}/{key}", depth + 1)
        if "pattern" in schema:
            self._patterns[schema["pattern"]] = re.compile(schema["pattern"])

    def validate(self, document: Any) -> None:
        """Raise ``SchemaViolation`` (a ``ManifestError``) at the first field that does not match."""
        self._validate(document, self.schema, "", 0)

    def _resolve(self, ref: str) -> Mapping[str, Any]:
        if not ref.startswith("#/$defs/"):
            raise ManifestError(f"schema $ref {ref!r}: only local '#/$defs/...' references are supported")
        return self.schema["$defs"][ref[len("#/$defs/"):]]

    def _validate(self, value: Any, schema: Mapping[str, Any], path: str, depth: int) -> None:
        if depth > MAX_DEPTH:
            raise SchemaViolation(path, f"nesting at most {MAX_DEPTH} deep", _Text("deeper nesting"))
        if "$ref" in schema:
            self._validate(value, self._resolve(schema["$ref"]), path, depth + 1)
        if "anyOf" in schema:
            failures = []
            for option in schema["anyOf"]:
                try:
                    self._validate(value, option, path, depth + 1)
                    break
                except SchemaViolation as err:
                    failures.append(err)
            else:
                # Report the alternative that got furthest into the value (the most specific message);
                # when none got past this value itself, list what each would have taken.
                deepest = max(failures, key=lambda err: len(err.path))
                if all(err.path == path for err in failures):
                    raise SchemaViolation(path, " or ".join(err.expected for err in failures), value)
                raise deepest
        if "type" in schema:
            names = schema["type"] if isinstance(schema["type"], list) else [schema["type"]]
            if not any(_is_type(value, name) for name in names):
                raise SchemaViolation(path, " or ".join(names), value)
        if "const" in schema and not _equal(value, schema["const"]):
            raise SchemaViolation(path, repr(schema["const"]), value)
        if "enum" in schema and not any(_equal(value, option) for option in schema["enum"]):
            raise SchemaViolation(path, f"one of {schema['enum']}", value)
        if _is_type(value, "number"):
            if "minimum" in schema and value < schema["minimum"]:
                raise SchemaViolation(path, f"a number >= {schema['minimum']}", value)
            if "maximum" in schema and value > schema["maximum"]:
                raise SchemaViolation(path, f"a number <= {schema['maximum']}", value)
            if "exclusiveMinimum" in schema and value <= schema["exclusiveMinimum"]:
                raise SchemaViolation(path, f"a number > {schema['exclusiveMinimum']}", value)
        if isinstance(value, str):
            if "minLength" in schema and len(value) < schema["minLength"]:
                raise SchemaViolation(path, f"a string of at least {schema['minLength']} characters", value)
            if "maxLength" in schema and len(value) > schema["maxLength"]:
                raise SchemaViolation(path, f"a string of at most {schema['maxLength']} characters", value)
            if "pattern" in schema and self._patterns[schema["pattern"]].search(value) is None:
                raise SchemaViolation(path, f"a string matching {schema['pattern']}", value)
        if isinstance(value, list):
            if "minItems" in schema and len(value) < schema["minItems"]:
                raise SchemaViolation(path, f"at least {schema['minItems']} items", _Text(f"{len(value)} items"))
            if "maxItems" in schema and len(value) > schema["maxItems"]:
                raise SchemaViolation(path, f"at most {schema['maxItems']} items", _Text(f"{len(value)} items"))
            if "items" in schema:
                for index, item in enumerate(value):
                    self._validate(item, schema["items"], _join(path, index), depth + 1)
        if isinstance(value, Mapping):
            for key in schema.get("required", []):
                if key not in value:
                    raise SchemaViolation(_join(path, key), "a value (the field is required)", _Text("nothing"))
            properties = schema.get("properties", {})
            extra = schema.get("additionalProperties", True)
            for key, item in value.items():
                if key in properties:
                    self._validate(item, properties[key], _join(path, key), depth + 1)
                elif extra is False:
                    raise SchemaViolation(_join(path, str(key)), f"no such field (allowed: {sorted(properties)})",
                                          item)
                elif isinstance(extra, Mapping):
                    self._validate(item, extra, _join(path, str(key)), depth + 1)
