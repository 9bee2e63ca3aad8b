"""`EmbedRequest.dimensions` is sent where the model takes it and refused where it cannot be,
never dropped: the sizes the vendors document per model (checked before any call), and a check of
the answer for hosts that ignore the field instead of rejecting it (OpenAI-compatible servers,
Ollama, models newer than these rules)."""

from __future__ import annotations

from provider_gateway.domain import EmbedResult
from provider_gateway.errors import GatewayError
from provider_gateway.providers.structured_output import unhonoured

# Output sizes of the models that take one from a fixed set (the vendors' model parameter pages):
# Cohere Embed v4 (`output_dimension`, on Cohere and Bedrock), Titan Text Embeddings V2 (`dimensions`).
COHERE_V4_SIZES = (256, 512, 1024, 1536)
TITAN_V2_SIZES = (256, 512, 1024)


def fixed_width(vendor: str, model: str, why: str) -> GatewayError:
    """The refusal of `dimensions` on a model whose vectors have one width."""
    return unhonoured("dimensions", vendor, model, f"{why}; leave dimensions at 0 for the model's width")


def check_size(dimensions: int, sizes: tuple[int, ...], vendor: str, model: str, one_width: str = "") -> None:
    """Refuses a size the model does not offer (the vendor would answer 400 after the round trip):
    any size, when it offers none (`sizes` empty; `one_width` says why)."""
    if dimensions and not sizes:
        raise fixed_width(vendor, model, one_width)
    if dimensions and dimensions not in sizes:
        offered = ", ".join(str(size) for size in sizes)
        raise unhonoured(
            "dimensions", vendor, model, f"it takes {offered} (or 0 for its default), not {dimensions}"
        )


def check_widths(result: EmbedResult, dimensions: int, vendor: str, model: str) -> EmbedResult:
    """`result` when every vector has the asked width; a host that ignored `dimensions` answered
    full-width vectors, which the client must not take for what it asked."""
    widths = sorted({len(vector) for vector in result.vectors})
    if dimensions and widths and widths != [dimensions]:
        got = ", ".join(str(width) for width in widths)
        raise fixed_width(vendor, model, f"it answered vectors of {got} values, not {dimensions}")
    return result
