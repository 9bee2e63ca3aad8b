'use strict';
// The stream helper, in the manner of the anthropic SDK's `messages.stream()`:
//
//   const stream = gateway.chatStream({ model: 'mock/echo', prompt: 'Hi' });
//   stream.on('text', (delta) => process.stdout.write(delta));
//   const answer = await stream.finalMessage();   // text, reasoning, toolCalls, usage, finish
//
// A ChatStream is an async iterable of events (`for await`), `textStream` iterates only the text,
// and `finalMessage()` reads what is left and returns the whole answer, tool calls joined from their
// deltas and reasoning blocks with their opaque state, as the unary call returns them; it always has
// its `finish`. Leaving a loop early, `cancel()` or the call's AbortSignal cancels the call, and the
// gateway stops the provider's work; `finalMessage()` then throws CANCELLED rather than pass part of
// an answer off as the whole. A stream that ends without its `finish` (the proto makes it the last
// event of every successful stream) throws UNAVAILABLE. One that failed before its first event is
// retried as `maxRetries` allows (retries.js). Events the gateway sent together as one batch
// (`streamOptions.batchEvents`, which the client asks for) come out one by one, as if each had come
// in its own message: no reader of a ChatStream ever sees a batch.

const { status } = require('@grpc/grpc-js');
const errors = require('./errors');
const { eventFromWire, unbatched } = require('./convert');
const { sleep } = require('./retries');

const NO_FINISH = 'stream ended without a finish';
// The retry policy reads "Cancelled on client" as a cancel of this client's own: never retried.
const LEFT_EARLY = 'Cancelled on client: the stream was left before its finish';

/** A tool call with its arguments parsed; `incomplete` (cut, or not a JSON object): do not run it. */
function toolCall(id, name, argumentsJson, incomplete = false) {
  let parsed = {};
  if (argumentsJson && !incomplete) {
    try {
      parsed = JSON.parse(argumentsJson);
    } catch {
      parsed = null;
    }
    if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
      parsed = {};
      incomplete = true;
    }
  }
  return { id, name, argumentsJson, incomplete: Boolean(incomplete), arguments: parsed };
}

/** Builds a stream's whole answer event by event (what `finalMessage()` returns). */
class Accumulator {
  constructor() {
    this.text = '';
    this.reasoning = '';
    this.block = ''; // reasoning text since the last block-closing delta
    this.reasoningParts = [];
    this.deltas = new Map(); // tool call index -> joined argument deltas
    this.toolCalls = new Map();
    this.rawContent = [];
    this.logprobs = [];
    this.usage = null;
    this.finish = null;
  }

  add(event) {
    switch (event.event) {
      case 'textDelta':
        this.text += event.textDelta.text;
        if (event.textDelta.logprobs) this.logprobs.push(...event.textDelta.logprobs);
        break;
      case 'reasoningDelta': {
        const { text, signature, redacted, id, issuer } = event.reasoningDelta;
        this.reasoning += text;
        this.block += text;
        if (signature || redacted || id) {
          // A delta with opaque state closes a block, as the gateway folds a unary answer.
          this.reasoningParts.push({ text: this.block, signature, redacted, id, issuer: issuer || '' });
          this.block = '';
        }
        break;
      }
      case 'toolCallStart':
        this.deltas.set(event.toolCallStart.index, '');
        break;
      case 'toolCallDelta': {
        const { index, argumentsDelta } = event.toolCallDelta;
        this.deltas.set(index, (this.deltas.get(index) || '') + argumentsDelta);
        break;
      }
      case 'toolCallEnd': {
        const { index, call } = event.toolCallEnd;
        // The end carries the whole arguments; the joined deltas are the fallback.
        const json = call.argumentsJson || this.deltas.get(index) || '';
        this.toolCalls.set(index, toolCall(call.id, call.name, json, call.incomplete));
        break;
      }
      case 'usage':
        this.usage = event.usage; // the last report counts
        break;
      case 'finish':
        this.finish = event.finish;
        break;
      case 'rawContent':
        this.rawContent.push(event.rawContent);
        break;
      default:
        break;
    }
  }

  result() {
    const reasoningParts = [...this.reasoningParts];
    if (this.block) reasoningParts.push({ text: this.block, signature: '', redacted: false, id: '', issuer: '' });
    return {
      text: this.text,
      reasoning: this.reasoning,
      reasoningParts,
      toolCalls: [...this.toolCalls.keys()].sort((a, b) => a - b).map((i) => this.toolCalls.get(i)),
      usage: this.usage,
      finish: this.finish,
      rawContent: this.rawContent,
      logprobs: this.logprobs,
    };
  }
}

/**
 * The events of a call, retried before the first one as the policy allows. `start()` opens one
 * attempt and returns its grpc-js stream. A module function rather than a method, so that the
 * ChatStream holding it is not kept alive by it.
 */
async function* attempts(start, policy, deadline, signal) {
  for (let retry = 0; ; retry++) {
    const call = start();
    let received = false;
    let usageSeen = false;
    let finished = false;
    let error;
    try {
      for await (const message of call) {
        received = true;
        for (const raw of unbatched(message)) {
          const event = eventFromWire(raw);
          if (event.event === 'usage') usageSeen = true;
          // Asked for `usageInFinish`, the gateway sends the usage in the finish only: it still
          // comes as a `usage` event before `finish`, as from a gateway that predates the option.
          else if (event.event === 'finish' && event.finish.usage && !usageSeen) {
            yield { event: 'usage', usage: event.finish.usage };
          }
          if (event.event === 'finish') finished = true;
          yield event;
        }
      }
      if (finished) return;
      error = new errors.UnavailableError(status.UNAVAILABLE, NO_FINISH);
    } catch (thrown) {
      error = errors.gatewayError(thrown);
    } finally {
      call.cancel(); // a no-op after a clean end; stops the gateway's work after a `break`
    }
    const wait = received ? null : policy.waitBeforeMs(retry, error, deadline);
    if (wait === null) throw error;
    await sleep(wait, signal);
  }
}

const LISTENED = new Set(['event', 'text', 'reasoning', 'toolCall']);

class ChatStream {
  /**
   * @param {(signal: AbortSignal) => import('@grpc/grpc-js').ClientReadableStream<unknown>} start
   *   opens one attempt, cancelled when `signal` aborts
   */
  constructor(start, policy, deadline, signal) {
    this._abort = new AbortController();
    this._detach = () => {};
    if (signal && signal.aborted) this._abort.abort();
    else if (signal) {
      const forward = () => this._abort.abort();
      signal.addEventListener('abort', forward, { once: true });
      // Removed when the stream ends: a signal shared by many calls must not collect listeners.
      this._detach = () => signal.removeEventListener('abort', forward);
    }
    this._accumulator = new Accumulator();
    this._listeners = new Map();
    this._error = null; // what ended the stream, thrown again by a later finalMessage()
    /** The grpc-js stream of the current attempt (null before the first). */
    this.call = null;
    const open = () => {
      this.call = start(this._abort.signal);
      return this.call;
    };
    this._events = attempts(open, policy, deadline, this._abort.signal);
  }

  async *[Symbol.asyncIterator]() {
    let ended = false;
    try {
      for (;;) {
        let next;
        try {
          next = await this._events.next();
        } catch (error) {
          ended = true;
          this._error = error;
          throw error;
        }
        if (next.done) {
          ended = true;
          return;
        }
        this._accumulator.add(next.value);
        this._emit(next.value);
        yield next.value;
      }
    } finally {
      if (!ended) await this._events.return(); // left early: cancels the call
      this._detach();
    }
  }

  /**
   * Calls `listener` as events pass, whoever reads the stream (a loop, `textStream` or
   * `finalMessage()`): 'event' (event), 'text' (delta, text so far), 'reasoning' (delta, reasoning
   * so far), 'toolCall' (the whole call, arguments parsed). Returns the stream, to chain.
   */
  on(name, listener) {
    if (!LISTENED.has(name)) throw new TypeError(`unknown stream event '${name}'; one of ${[...LISTENED]}`);
    if (!this._listeners.has(name)) this._listeners.set(name, []);
    this._listeners.get(name).push(listener);
    return this;
  }

  _emit(event) {
    const call = (name, ...args) => (this._listeners.get(name) || []).forEach((listener) => listener(...args));
    const acc = this._accumulator;
    call('event', event);
    if (event.event === 'textDelta') call('text', event.textDelta.text, acc.text);
    if (event.event === 'reasoningDelta') call('reasoning', event.reasoningDelta.text, acc.reasoning);
    if (event.event === 'toolCallEnd') call('toolCall', acc.toolCalls.get(event.toolCallEnd.index));
  }

  /** Only the answer text, piece by piece (the other events still count for `finalMessage()`). */
  get textStream() {
    const stream = this;
    return (async function* texts() {
      for await (const event of stream) {
        if (event.event === 'textDelta') yield event.textDelta.text;
      }
    })();
  }

  /**
   * Reads the rest of the stream; the whole answer: text, reasoning, tool calls, usage, finish.
   * Throws what ended the stream, or CANCELLED when it was left early: never part of an answer.
   */
  async finalMessage() {
    // eslint-disable-next-line no-unused-vars
    for await (const _ of this) {
      // each event is accumulated (and its listeners called) as it passes
    }
    const answer = this._accumulator.result();
    if (answer.finish) return answer;
    throw this._error || new errors.GatewayError(status.CANCELLED, LEFT_EARLY);
  }

  /** The whole answer's text. */
  async finalText() {
    return (await this.finalMessage()).text;
  }

  /** Cancels the call (or the wait before a retry); the stream then throws a CANCELLED GatewayError. */
  cancel() {
    this._abort.abort();
  }
}

/** An answer (`chat()`'s, or a stream's `finalMessage()`) as the assistant turn of the next request:
 * reasoning blocks with their opaque state (which some providers need back), text, then tool calls. */
function assistantTurn(answer) {
  // `issuer` goes back unchanged: the gateway leaves out a block another vendor signed.
  const content = (answer.reasoningParts || []).map(({ text, signature, redacted, id, issuer }) => ({
    reasoning: { text, signature, redacted, id, issuer },
  }));
  if (answer.text) content.push({ text: answer.text });
  for (const { id, name, argumentsJson } of answer.toolCalls || []) {
    content.push({ toolCall: { id, name, argumentsJson } });
  }
  return { role: 'ROLE_ASSISTANT', content };
}

/**
 * Collects a stream (a ChatStream, or any async iterable of events, batches included) into its whole
 * answer. One that ends without its `finish` throws UNAVAILABLE, as a ChatStream does: never part of
 * an answer.
 */
async function collect(stream) {
  if (stream instanceof ChatStream) return stream.finalMessage();
  const accumulator = new Accumulator();
  for await (const message of stream) unbatched(message).forEach((event) => accumulator.add(event));
  if (!accumulator.finish) throw new errors.UnavailableError(status.UNAVAILABLE, NO_FINISH);
  return accumulator.result();
}

module.exports = { ChatStream, Accumulator, assistantTurn, collect, toolCall };
