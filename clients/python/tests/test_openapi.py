"""The client's models against the `/openapi.json` a real server serves: a schema added, a field
renamed, added, made optional or retyped on the server without the same change here fails."""

from __future__ import annotations

import dataclasses
import enum
import types
import typing
from typing import Any

from chassis_client import Client
from chassis_client.models import SCHEMAS

from .conftest import Server

NAMES = {cls: name for name, cls in SCHEMAS.items()}
PRIMITIVES = {str: "string", int: "integer", float: "number", bool: "boolean"}


def unwrap_optional(annotation: Any) -> tuple[Any, bool]:
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = typing.get_args(annotation)
        inner = [a for a in args if a is not type(None)]
        assert len(inner) == 1, f"unions other than X | None are not models: {annotation}"
        return inner[0], len(inner) < len(args)
    return annotation, False


def shape(prop: dict[str, Any]) -> tuple[set[str], str | None, dict[str, Any]]:
    """(JSON types, referenced schema, the schema with the types) of a property."""
    if "$ref" in prop:
        return set(), prop["$ref"].rsplit("/", 1)[-1], prop
    for key in ("oneOf", "anyOf", "allOf"):
        if key in prop:
            types_: set[str] = set()
            ref = None
            inner: dict[str, Any] = {}
            for option in prop[key]:
                t, r, s = shape(option)
                types_ |= t
                ref = ref or r
                inner = s if (r or t - {"null"}) else inner
            return types_, ref, inner
    kind = prop.get("type")
    kinds = set(kind) if isinstance(kind, list) else ({kind} if kind else set())
    return kinds, None, prop


def mismatch(annotation: Any, prop: dict[str, Any], where: str) -> list[str]:
    """What differs between a Python annotation and a property's schema."""
    base, nullable = unwrap_optional(annotation)
    kinds, ref, schema = shape(prop)
    problems = []
    if nullable != ("null" in kinds):
        problems.append(f"{where}: nullable here {nullable}, in the document {'null' in kinds}")
    kinds.discard("null")
    origin = typing.get_origin(base)
    if base in PRIMITIVES:
        want = PRIMITIVES[base]
        if want not in kinds:
            problems.append(f"{where}: {base.__name__} here, {sorted(kinds) or ref} in the document")
    elif origin is list:
        if kinds != {"array"}:
            problems.append(f"{where}: a list here, {sorted(kinds) or ref} in the document")
        else:
            (item,) = typing.get_args(base)
            problems += mismatch(item, schema.get("items", {}), f"{where}[]")
    elif origin is dict:
        if kinds != {"object"}:
            problems.append(f"{where}: an object here, {sorted(kinds) or ref} in the document")
        else:
            _, value = typing.get_args(base)
            extra = schema.get("additionalProperties")
            if value is not Any and isinstance(extra, dict):
                problems += mismatch(value, extra, f"{where}{{}}")
    elif base is Any:
        pass
    elif base in NAMES:
        if ref != NAMES[base]:
            problems.append(f"{where}: {NAMES[base]} here, {ref or sorted(kinds)} in the document")
    else:
        problems.append(f"{where}: no rule for {base!r}")
    return problems


def field_problems(name: str, cls: Any, schema: dict[str, Any]) -> list[str]:
    hints = typing.get_type_hints(cls)
    fields = {f.metadata.get("json", f.name): hints[f.name] for f in dataclasses.fields(cls)}
    properties = schema.get("properties", {})
    problems = []
    if set(fields) != set(properties):
        problems.append(
            f"{name}: fields only here {sorted(set(fields) - set(properties))}, "
            f"only in the document {sorted(set(properties) - set(fields))}"
        )
    required_here = {f for f, t in fields.items() if not unwrap_optional(t)[1]}
    required_there = set(schema.get("required", []))
    if required_here != required_there:
        problems.append(
            f"{name}: required only here {sorted(required_here - required_there)}, "
            f"only in the document {sorted(required_there - required_here)}"
        )
    for field in sorted(set(fields) & set(properties)):
        problems += mismatch(fields[field], properties[field], f"{name}.{field}")
    return problems


def test_the_models_match_the_servers_openapi_document(server: Server) -> None:
    with Client(server.url, token=server.viewer) as client:
        document = client.openapi()
    schemas = document["components"]["schemas"]

    assert set(SCHEMAS) == set(schemas), (
        f"schemas without a model: {sorted(set(schemas) - set(SCHEMAS))}; "
        f"models of no schema: {sorted(set(SCHEMAS) - set(schemas))}"
    )
    problems: list[str] = []
    for name, cls in SCHEMAS.items():
        schema = schemas[name]
        if isinstance(cls, type) and issubclass(cls, enum.Enum):
            if sorted(schema.get("enum", [])) != sorted(e.value for e in cls):
                problems.append(f"{name}: values {sorted(e.value for e in cls)} here, {schema.get('enum')} there")
        elif name == "EventRecord":
            # Events are free-form (`seq`, `at_ms`, `kind` and their kind's fields): `Event`
            # keeps them whole. A document that starts listing their fields needs a model.
            if schema.get("type") != "object" or "properties" in schema:
                problems.append(f"EventRecord is no longer a free-form object: {schema}")
        else:
            assert dataclasses.is_dataclass(cls), name
            problems += field_problems(name, cls, schema)
    assert not problems, "the client's models drifted from /openapi.json:\n" + "\n".join(problems)


def test_the_drift_check_sees_a_difference() -> None:
    """The check itself: a renamed, retyped or no-longer-optional field is reported."""
    schema = {
        "type": "object",
        "required": ["run_id", "status"],
        "properties": {
            "run_id": {"type": "string"},
            "status": {"$ref": "#/components/schemas/Status"},
            "driver": {"type": "integer"},
        },
    }
    assert field_problems("Cancelled", SCHEMAS["Cancelled"], schema) == [
        "Cancelled.driver: nullable here True, in the document False",
        "Cancelled.driver: str here, ['integer'] in the document",
        "Cancelled.status: str here, Status in the document",
    ]
    renamed = {
        "type": "object",
        "required": ["run_id"],
        "properties": {
            "run_id": {"type": "string"},
            "state": {"type": "string"},
            "driver": {"type": ["string", "null"]},
        },
    }
    assert field_problems("Cancelled", SCHEMAS["Cancelled"], renamed) == [
        "Cancelled: fields only here ['status'], only in the document ['state']",
        "Cancelled: required only here ['status'], only in the document []",
    ]
