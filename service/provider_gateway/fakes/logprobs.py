"""Token log-probabilities in the vendors' documented shapes, for the fakes: OpenAI's entries
(`{token, logprob, bytes, top_logprobs}`, Chat Completions and the Responses API alike) and
Gemini's `logprobsResult` (`chosenCandidates`, `topCandidates`). Deterministic: the i-th token of
an answer scores `score(i)`, and its alternatives follow it, less likely each."""

from __future__ import annotations

from typing import Any

ALTERNATIVES = (" the", " a", "!", ".", " of", " and")


def score(index: int) -> float:
    """Exact binary fractions (a JSON round trip keeps them); the first token is certain (0.0)."""
    return -0.125 * (index % 5)


def openai_token(token: str | bytes) -> tuple[str, list[int]]:
    """A token's text and bytes as OpenAI gives them; a piece of a character (bytes) is named by
    its byte escapes, as OpenAI names such tokens (`bytes:\\xe2\\x80`)."""
    if isinstance(token, bytes):
        return "bytes:" + "".join(f"\\x{b:02x}" for b in token), list(token)
    return token, list(token.encode())


def openai_entry(token: str | bytes, index: int, top: int) -> dict[str, Any]:
    text, utf8 = openai_token(token)
    chosen = {"token": text, "logprob": score(index), "bytes": utf8}
    others = [
        {"token": alt, "logprob": score(index) - 1.5 - n, "bytes": list(alt.encode())}
        for n, alt in enumerate(ALTERNATIVES[: max(top - 1, 0)])
    ]
    return chosen | {"top_logprobs": [chosen, *others][:top]}


def openai_entries(tokens: list[str | bytes], top: int, start: int = 0) -> list[dict[str, Any]]:
    return [openai_entry(token, start + i, top) for i, token in enumerate(tokens)]


def gemini_result(tokens: list[str], top: int, start: int = 0) -> dict[str, Any]:
    """A candidate's `logprobsResult` for `tokens` (the i-th of the answer at `start + i`). proto3
    JSON leaves a zero out, as Google's servers do: a certain token has no `logProbability`."""

    def candidate(token: str, logprob: float, token_id: int) -> dict[str, Any]:
        entry: dict[str, Any] = {"token": token, "tokenId": token_id}
        return entry | ({"logProbability": logprob} if logprob else {})

    chosen = [candidate(token, score(start + i), 1000 + start + i) for i, token in enumerate(tokens)]
    steps = [
        {
            "candidates": [
                chosen[i],
                *(
                    candidate(alt, score(start + i) - 1.5 - n, 2000 + n)
                    for n, alt in enumerate(ALTERNATIVES[: max(top - 1, 0)])
                ),
            ][:top]
        }
        for i in range(len(tokens))
    ]
    return {"topCandidates": steps, "chosenCandidates": chosen} if top else {"chosenCandidates": chosen}
