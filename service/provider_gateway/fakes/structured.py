"""What the fakes answer to a structured-output request: the smallest JSON instance of the schema
they were sent (every required property, the first enum value, a fixed value per type), so a
test can check that the schema reached the vendor and its answer came back as the client's text."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

EXAMPLE_STRING = "Paris"


def instance_of(schema: Any) -> Any:
    """A value matching `schema` (the subset the tests send: types, properties, required, enum)."""
    if not isinstance(schema, Mapping):
        return {}
    if schema.get("enum"):
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        properties = schema.get("properties") or {}
        required = schema.get("required") or list(properties)
        return {name: instance_of(properties.get(name)) for name in required}
    if kind == "array":
        return [instance_of(schema.get("items"))]
    return {"string": EXAMPLE_STRING, "integer": 1, "number": 1.5, "boolean": True}.get(str(kind))
