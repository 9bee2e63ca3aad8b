"""`<think>...</think>` at the very start of a model's output is reasoning (DeepSeek-R1 style).

Only the start counts, after any whitespace (templates often put a newline first): a tag later in
the text is text. Tags may be split across deltas, so a possible partial tag (at most 7
characters), and leading whitespace, are held back until the next delta settles them; nothing else
waits.

Output that only closes a block ("...</think>Answer") is split only when the caller says the
prompt opened it (`prompt_opened`: the model's chat template ends the prompt with `<think>`, as
DeepSeek-R1's and QwQ's do): then the output is reasoning from its first character up to the first
`</think>` (a `<think>` the model writes first anyway is dropped), whitespace alone or a partial tag
at the end included. Without that word nothing says where the model started thinking, and ordinary
text that happens to hold `</think>` must stay text.

A block the prompt opened that the output never closes is all reasoning; when the model ended its
answer itself (`close(answered=True)`: finish `stop` or `tool_calls`), that output is given again,
whole, as the text: a model that did not think after all (thinking switched off where the gateway
could not see it) keeps its answer. What was relayed as reasoning cannot be taken back, hence
again, not instead.
"""

from __future__ import annotations

from provider_gateway.domain import ReasoningDelta, TextDelta

OPEN, CLOSE = "<think>", "</think>"


def may_open(text: str) -> bool:
    """Whether a whole output may open a `<think>` block (a quick test before any split)."""
    return text.lstrip().startswith(OPEN[0])  # lstrip copies nothing when there is no whitespace


def _partial_suffix(text: str, tag: str) -> int:
    """Length of the longest suffix of `text` that is a proper prefix of `tag`."""
    for size in range(min(len(tag) - 1, len(text)), 0, -1):
        if text.endswith(tag[:size]):
            return size
    return 0


class ThinkSplitter:
    __slots__ = ("_buffer", "_state", "_unclosed")

    def __init__(self, *, prompt_opened: bool = False) -> None:
        self._state = "start"  # start -> thinking -> text, or start -> text
        self._buffer = ""
        # The reasoning so far of the block the prompt opened, while it is open (`close` may give
        # it again as text); None when the prompt opened no block, or once it has closed.
        self._unclosed: list[str] | None = [] if prompt_opened else None

    def reasoning_elsewhere(self) -> None:
        """The host sent reasoning in a field of its own (`reasoning_content`) before any text
        (whitespace it sent first, still held, is no text yet): it has split the block itself, so
        the text that follows is the answer, not its reasoning."""
        if self._state == "start":
            self._unclosed = None

    def feed(self, text: str) -> list[TextDelta | ReasoningDelta]:
        if self._state == "text":
            return [TextDelta(text)] if text else []
        self._buffer += text
        if self._state == "start":
            lead = self._buffer.lstrip()
            if len(lead) < len(OPEN) and OPEN.startswith(lead):
                return []  # could still become "<think>" (whitespace alone too)
            if lead.startswith(OPEN):
                self._state, self._buffer = "thinking", lead[len(OPEN) :]
                self._unclosed = None  # the model opened the block: it thinks, whatever the end
            elif self._unclosed is not None:
                self._state = "thinking"  # the prompt opened the block: all of it is reasoning
            else:
                self._state = "text"
                return self._flush_text()  # the whitespace is the text's
        end = self._buffer.find(CLOSE)
        if end >= 0:
            reasoning, rest = self._buffer[:end], self._buffer[end + len(CLOSE) :]
            self._state, self._buffer, self._unclosed = "text", rest, None
            out: list[TextDelta | ReasoningDelta] = [ReasoningDelta(reasoning)] if reasoning else []
            return out + self._flush_text()
        keep = _partial_suffix(self._buffer, CLOSE)
        reasoning, self._buffer = (
            self._buffer[: len(self._buffer) - keep],
            self._buffer[len(self._buffer) - keep :],
        )
        if not reasoning:
            return []
        if self._unclosed is not None:
            self._unclosed.append(reasoning)
        return [ReasoningDelta(reasoning)]

    def close(self, *, answered: bool = False) -> list[TextDelta | ReasoningDelta]:
        """End of output: whatever is held back is what it looked like; in a block the prompt
        opened, reasoning. `answered`: the model ended its answer itself, so the output of a block
        the prompt opened and nothing closed is also its text (the module's docstring)."""
        held, self._buffer = self._buffer, ""
        unclosed, self._unclosed = self._unclosed, None
        if self._state == "text" or (self._state == "start" and unclosed is None):
            return [TextDelta(held)] if held else []
        out: list[TextDelta | ReasoningDelta] = [ReasoningDelta(held)] if held else []
        if answered and unclosed is not None and (whole := "".join(unclosed) + held):
            out.append(TextDelta(whole))
        return out

    def _flush_text(self) -> list[TextDelta | ReasoningDelta]:
        text, self._buffer = self._buffer, ""
        return [TextDelta(text)] if text else []
