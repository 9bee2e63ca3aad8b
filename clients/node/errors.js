'use strict';
// Typed errors, as in the Python client: every failed call rejects (or its stream throws) with a
// GatewayError subclass carrying `code` (a grpc.status number), `codeName`, `details`,
// `retryAfter` (seconds the gateway asked to wait, or null) and `doNotRetry`, the grpc-js error as
// `cause`.
//
// retryAfter comes from the google.rpc.RetryInfo in `grpc-status-details-bin`, else from
// `retry-after-ms`, else from gRFC A6's `grpc-retry-pushback-ms`, whose negative value says that no
// retry can help (`doNotRetry`). The few protobuf fields involved are read by hand, so that no
// protobuf runtime beyond grpc-js's own is needed.

const { status } = require('@grpc/grpc-js');

const RETRY_INFO_TYPE = 'type.googleapis.com/google.rpc.RetryInfo';
const PUSHBACK = 'grpc-retry-pushback-ms'; // gRFC A6: milliseconds to wait; negative or unreadable: no retry
const INT32_MAX = 2 ** 31 - 1;
const CODE_NAMES = Object.fromEntries(Object.entries(status).map(([name, code]) => [code, name]));

// `options`: Error's (`cause`), and `doNotRetry`: the gateway said a retry would fail the same way
// (the provider told it so, and it has no other to ask).
class GatewayError extends Error {
  constructor(code, details, retryAfter = null, options = undefined) {
    super(`${CODE_NAMES[code] || code}: ${details}`, options);
    this.name = new.target.name;
    this.code = code;
    this.codeName = CODE_NAMES[code] || String(code);
    this.details = details;
    this.retryAfter = retryAfter;
    this.doNotRetry = Boolean(options && options.doNotRetry);
  }
}

class RateLimitError extends GatewayError {}
class NotFoundError extends GatewayError {}
class PermissionDeniedError extends GatewayError {}
class AuthenticationError extends GatewayError {}
class InvalidRequestError extends GatewayError {}
class UnavailableError extends GatewayError {}
class DeadlineExceededError extends GatewayError {}

const ERROR_CLASSES = {
  [status.RESOURCE_EXHAUSTED]: RateLimitError,
  [status.NOT_FOUND]: NotFoundError,
  [status.PERMISSION_DENIED]: PermissionDeniedError,
  [status.UNAUTHENTICATED]: AuthenticationError,
  [status.INVALID_ARGUMENT]: InvalidRequestError,
  [status.FAILED_PRECONDITION]: InvalidRequestError,
  [status.UNAVAILABLE]: UnavailableError,
  [status.DEADLINE_EXCEEDED]: DeadlineExceededError,
};

/** The protobuf fields of `bytes` as [number, value]: varints as Numbers, length-delimited as Buffers. */
function fields(bytes) {
  const out = [];
  let at = 0;
  const varint = () => {
    let value = 0;
    for (let shift = 0; ; shift += 7) {
      if (at >= bytes.length) throw new Error('truncated varint');
      const byte = bytes[at++];
      value += (byte & 0x7f) * 2 ** shift;
      if (byte < 0x80) return value;
    }
  };
  while (at < bytes.length) {
    const key = varint();
    const wire = key % 8;
    if (wire === 0) out.push([Math.floor(key / 8), varint()]);
    else if (wire === 2) {
      const length = varint();
      out.push([Math.floor(key / 8), bytes.subarray(at, at + length)]);
      at += length;
    } else if (wire === 1) at += 8;
    else if (wire === 5) at += 4;
    else throw new Error(`unsupported wire type ${wire}`);
  }
  return out;
}

/** Seconds from a serialized google.rpc.Status's RetryInfo detail, or null. */
function retryInfoDelay(statusBytes) {
  for (const [number, any] of fields(statusBytes)) {
    if (number !== 3) continue; // Status.details: repeated Any
    const parts = fields(any);
    const typeUrl = parts.find(([n]) => n === 1);
    const value = parts.find(([n]) => n === 2);
    if (!typeUrl || !value || typeUrl[1].toString() !== RETRY_INFO_TYPE) continue;
    const delay = fields(value[1]).find(([n]) => n === 1); // RetryInfo.retry_delay: Duration
    if (!delay) return 0;
    const duration = Object.fromEntries(fields(delay[1]));
    return (duration[1] || 0) + (duration[2] || 0) / 1e9;
  }
  return null;
}

function retryAfterOf(metadata) {
  if (!metadata || typeof metadata.get !== 'function') return null;
  const [details] = metadata.get('grpc-status-details-bin');
  if (details) {
    try {
      const delay = retryInfoDelay(Buffer.from(details));
      if (delay !== null) return delay;
    } catch {
      // a malformed trailer must not hide the error it came with
    }
  }
  const [millis] = metadata.get('retry-after-ms');
  if (millis !== undefined && /^\d+$/.test(String(millis))) return Number(millis) / 1000;
  const pushback = pushbackMs(metadata);
  return pushback !== null && pushback >= 0 ? pushback / 1000 : null;
}

/** gRFC A6's `grpc-retry-pushback-ms`: the milliseconds to wait, -1 when it asks for no retry (a
 * negative value, or one that is no signed 32-bit number: A6, and gRPC's own retries, read an
 * unreadable value so), null when absent. */
function pushbackMs(metadata) {
  if (!metadata || typeof metadata.get !== 'function') return null;
  const [value] = metadata.get(PUSHBACK);
  if (value === undefined) return null;
  const text = String(value);
  const ms = Number(text);
  if (!/^-?\d{1,10}$/.test(text) || ms > INT32_MAX) return -1;
  return ms < 0 ? -1 : Math.abs(ms); // (abs: "-0" is 0)
}

/** The typed error for a grpc-js ServiceError (already typed errors pass through). */
function gatewayError(error) {
  if (error instanceof GatewayError) return error;
  const code = typeof error.code === 'number' ? error.code : status.UNKNOWN;
  const Class = ERROR_CLASSES[code] || GatewayError;
  const pushback = pushbackMs(error.metadata);
  return new Class(code, error.details || error.message || '', retryAfterOf(error.metadata), {
    cause: error,
    doNotRetry: pushback !== null && pushback < 0,
  });
}

module.exports = {
  GatewayError,
  RateLimitError,
  NotFoundError,
  PermissionDeniedError,
  AuthenticationError,
  InvalidRequestError,
  UnavailableError,
  DeadlineExceededError,
  gatewayError,
  retryAfterOf,
  pushbackMs,
};
