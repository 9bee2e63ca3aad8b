'use strict';
// When to try a failed call again, and how long to wait first: the Python client's policy.
//
// Only what cannot repeat output is retried: UNAVAILABLE (nothing was served), RESOURCE_EXHAUSTED
// (a rate limit, after the delay its RetryInfo asked for; not gRPC's own "message larger than max",
// which would fail the same way), and a CANCELLED this client did not ask for (gRPC ends a call that
// reaches a server just as it stops taking calls so, before any of it ran: grpc/grpc#41785; or a
// provider cancelled the request). A stream is retried only before its first event: once output
// arrived, a retry could show it twice; nor what the gateway said no retry can help (`doNotRetry`:
// a provider said so, and no other could take the request). The call's deadline is the budget of all
// its attempts together: a wait that would outlast it is not taken, the error is thrown instead.

const { status } = require('@grpc/grpc-js');
const { GatewayError } = require('./errors');

const RETRYABLE = new Set([status.UNAVAILABLE, status.RESOURCE_EXHAUSTED, status.CANCELLED]);
// grpc-js's wording (and this client's) for a call cancelled here, by an AbortSignal: never retried.
const LOCAL_CANCEL = 'Cancelled on client';
// How grpc-js and gRPC core word a message over the size limit, which they report as RESOURCE_EXHAUSTED.
const TOO_LARGE = 'larger than max';
const DEFAULT_MAX_RETRIES = 2;
const INITIAL_BACKOFF_MS = 500;
const MAX_BACKOFF_MS = 8_000;
// A rate limit asking for longer than this is the caller's decision, not a silent wait.
const MAX_RETRY_AFTER_MS = 60_000;

class RetryPolicy {
  constructor({
    maxRetries = DEFAULT_MAX_RETRIES,
    initialBackoffMs = INITIAL_BACKOFF_MS,
    maxBackoffMs = MAX_BACKOFF_MS,
  } = {}) {
    if (!Number.isInteger(maxRetries) || maxRetries < 0) {
      throw new RangeError(`maxRetries must be a whole number >= 0, not ${maxRetries}`);
    }
    this.maxRetries = maxRetries;
    this.initialBackoffMs = initialBackoffMs;
    this.maxBackoffMs = maxBackoffMs;
  }

  /** Exponential from initialBackoffMs, capped, with jitter so clients don't retry in step. */
  backoffMs(retry) {
    const base = Math.min(this.maxBackoffMs, this.initialBackoffMs * 2 ** retry);
    return base * (0.5 + Math.random() * 0.5);
  }

  /** Milliseconds to wait before retry number `retry` (0 first), or null to throw `error` now. */
  waitBeforeMs(retry, error, deadline) {
    if (retry >= this.maxRetries || !RETRYABLE.has(error.code) || error.doNotRetry) return null;
    if (error.code === status.RESOURCE_EXHAUSTED && String(error.details).includes(TOO_LARGE)) return null;
    if (error.code === status.CANCELLED && String(error.details).includes(LOCAL_CANCEL)) return null;
    let wait;
    if (error.retryAfter !== null && error.retryAfter !== undefined) {
      const asked = error.retryAfter * 1000;
      if (asked > MAX_RETRY_AFTER_MS) return null;
      // The server's delay is a floor; a little jitter spreads the clients it held at once.
      wait = asked + Math.random() * 0.1 * asked;
    } else {
      wait = this.backoffMs(retry);
    }
    if (deadline && Date.now() + wait >= deadline) return null;
    return wait;
  }
}

/** What a call cancelled through its AbortSignal rejects with, during a wait as during a call. */
function cancelledError() {
  return new GatewayError(status.CANCELLED, LOCAL_CANCEL);
}

/** Resolves after `ms`; rejects with a CANCELLED GatewayError as soon as `signal` aborts. */
function sleep(ms, signal) {
  return new Promise((resolve, reject) => {
    if (signal && signal.aborted) {
      reject(cancelledError());
      return;
    }
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelledError());
    };
    const timer = setTimeout(() => {
      if (signal) signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    if (signal) signal.addEventListener('abort', onAbort, { once: true });
  });
}

module.exports = { RetryPolicy, DEFAULT_MAX_RETRIES, sleep, cancelledError };
