"""Whether a request's prompt ends inside a `<think>` block the model's chat template opened.

The provider's `prompt_opens_think` names such models; a request that switches their thinking off
through `provider_options` does not get the block: the template then closes it in the prompt
(Qwen3's empty `<think></think>`, DeepSeek-V3.1's `</think>`), and the whole output is the answer.

`reasoning.enabled = false` is no such switch: the Chat Completions body carries nothing for it
(codec.py sends `reasoning_effort` only when reasoning is asked for), so the template's default
holds, and a model that always thinks writes its `</think>` as before.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from provider_gateway.domain import ChatRequest

# Where hosts take the switch: chat template arguments (vLLM, SGLang: Qwen3's and GLM's
# `enable_thinking`, DeepSeek-V3.1's `thinking`) or top-level fields (DashScope-style
# `enable_thinking`, `thinking: {"type": "disabled"}`).
_SWITCHES = ("enable_thinking", "thinking")


def block_opened_by_prompt(request: ChatRequest, patterns: tuple[str, ...]) -> bool:
    """The model is named in `patterns` (ids or fnmatch patterns) and the request leaves its
    thinking on."""
    named = any(fnmatch.fnmatchcase(request.model, pattern) for pattern in patterns)
    return named and not thinking_switched_off(request.provider_options)


def thinking_switched_off(options: Mapping[str, Any]) -> bool:
    template = options.get("chat_template_kwargs")
    places = (options, template) if isinstance(template, Mapping) else (options,)
    return any(_off(place.get(switch)) for place in places for switch in _SWITCHES)


def _off(value: Any) -> bool:
    return value is False or (isinstance(value, Mapping) and value.get("type") == "disabled")
