"""The Node client's `collect()` on a plain async iterable of events (not a ChatStream) refuses a
stream that ended without its `finish`, as the Python client and Node's own ChatStream do: part of
an answer is never passed off as the whole."""

from __future__ import annotations

import json

from test_node_client import run_node

COLLECT_SCRIPT = r"""
const { collect } = require('./index.js');
async function* events(finished) {
  yield { event: 'textDelta', textDelta: { text: 'Hello', logprobs: [] } };
  yield { event: 'textDelta', textDelta: { text: ' there', logprobs: [] } };
  if (finished) yield { event: 'finish', finish: { reason: 'FINISH_REASON_STOP', provider: 'mock', model: 'echo' } };
}
(async () => {
  const whole = await collect(events(true));
  let cut;
  try {
    cut = { answer: await collect(events(false)) };
  } catch (error) {
    cut = { error: error.name, codeName: error.codeName, details: error.details };
  }
  process.stdout.write(JSON.stringify({ whole: { text: whole.text, reason: whole.finish.reason }, cut }));
})().catch((error) => { process.stderr.write(String(error)); process.exit(1); });
"""


async def test_collect_of_a_plain_iterable_without_a_finish_throws_unavailable() -> None:
    code, out, err = await run_node("-e", COLLECT_SCRIPT)
    assert code == 0, err
    result = json.loads(out)
    assert result["whole"] == {"text": "Hello there", "reason": "FINISH_REASON_STOP"}
    assert result["cut"] == {
        "error": "UnavailableError",
        "codeName": "UNAVAILABLE",
        "details": "stream ended without a finish",
    }
