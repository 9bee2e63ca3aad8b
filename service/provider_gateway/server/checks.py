"""Structural checks of request parts that need more than a comparison: JSON schemas and images."""

from __future__ import annotations

import base64
import binascii
from typing import Any
from urllib.parse import urlsplit

from provider_gateway.errors import invalid_argument, shown
from provider_gateway.v1 import provider_service_pb2 as pb

MAX_SCHEMA_DEPTH = 32
MAX_PATH_NAME_CHARS = 40  # of one property name inside an error's field path
JSON_TYPES = frozenset({"object", "array", "string", "number", "integer", "boolean", "null"})
# What each accepted image type starts with; a declared type must match the bytes.
IMAGE_MAGIC: dict[str, tuple[bytes, ...]] = {
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/gif": (b"GIF87a", b"GIF89a"),
    "image/webp": (b"RIFF",),  # and b"WEBP" at offset 8, checked below
}


# --- schemas -------------------------------------------------------------------------------------


def schema(node: Any, where: str, depth: int = 0) -> None:
    """A structural check of a JSON schema: enough to catch what every vendor would reject."""
    if isinstance(node, bool):
        return
    if not isinstance(node, dict):
        raise invalid_argument(f"{where}: a schema must be an object, got {type(node).__name__}")
    if depth > MAX_SCHEMA_DEPTH:
        raise invalid_argument(f"{where}: schema nested deeper than {MAX_SCHEMA_DEPTH} levels")
    kind = node.get("type")
    kinds = kind if isinstance(kind, list) else [kind] if kind is not None else []
    for k in kinds:
        if k not in JSON_TYPES:
            raise invalid_argument(
                f"{where}.type: {shown(k)} is not a JSON schema type ({', '.join(sorted(JSON_TYPES))})"
            )
    properties = node.get("properties", {})
    if not isinstance(properties, dict):
        raise invalid_argument(f"{where}.properties: must be an object mapping names to schemas")
    for name, sub in properties.items():
        schema(sub, f"{where}.properties.{_path_name(name)}", depth + 1)
    required = node.get("required", [])
    if not isinstance(required, list) or not all(isinstance(r, str) for r in required):
        raise invalid_argument(f"{where}.required: must be a list of property names")
    if "items" in node:
        schema(node["items"], f"{where}.items", depth + 1)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in node:
            options = node[key]
            if not isinstance(options, list) or not options:
                raise invalid_argument(f"{where}.{key}: must be a non-empty list of schemas")
            for i, sub in enumerate(options):
                schema(sub, f"{where}.{key}[{i}]", depth + 1)
    if "enum" in node and (not isinstance(node["enum"], list) or not node["enum"]):
        raise invalid_argument(f"{where}.enum: must be a non-empty list")


def _path_name(name: str) -> str:
    """A property name in a field path, cut: 32 levels of long names must not make a huge message."""
    return name if len(name) <= MAX_PATH_NAME_CHARS else name[:MAX_PATH_NAME_CHARS] + "..."


# --- images --------------------------------------------------------------------------------------


def image(value: pb.Image, where: str) -> None:
    source = value.WhichOneof("source")
    media_type = value.media_type.lower()
    if media_type and media_type not in IMAGE_MAGIC:
        raise invalid_argument(
            f"{where}.media_type: {shown(value.media_type)} is not supported (use {', '.join(IMAGE_MAGIC)})"
        )
    if source is None:
        raise invalid_argument(f"{where}: set data or url")
    if source == "data":
        _image_bytes(value.data, media_type, f"{where}.data")
        return
    url = urlsplit(value.url)
    if url.scheme == "data":
        declared, data = _data_url(value.url, f"{where}.url")
        _image_bytes(data, declared, f"{where}.url")
    elif url.scheme not in ("http", "https") or not url.netloc:
        raise invalid_argument(
            f"{where}.url: must be an http(s) or data: URL, got scheme {shown(url.scheme)}"
        )


def _data_url(url: str, where: str) -> tuple[str, bytes]:
    header, comma, payload = url[len("data:") :].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64":
        raise invalid_argument(f"{where}: a data URL must look like data:image/png;base64,<data>")
    if media_type.lower() not in IMAGE_MAGIC:
        raise invalid_argument(
            f"{where}: media type {shown(media_type)} is not supported (use {', '.join(IMAGE_MAGIC)})"
        )
    try:
        return media_type.lower(), base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise invalid_argument(f"{where}: the data is not valid base64") from None


def _image_bytes(data: bytes, media_type: str, where: str) -> None:
    if not data:
        raise invalid_argument(f"{where}: image data is empty")
    sniffed = next(
        (kind for kind, magics in IMAGE_MAGIC.items() if data.startswith(magics) and _webp_ok(kind, data)),
        None,
    )
    if sniffed is None:
        raise invalid_argument(f"{where}: not a PNG, JPEG, GIF or WebP image")
    if media_type and sniffed != media_type:
        raise invalid_argument(f"{where}: declared {media_type} but the data is {sniffed}")


def _webp_ok(kind: str, data: bytes) -> bool:
    return kind != "image/webp" or data[8:12] == b"WEBP"
