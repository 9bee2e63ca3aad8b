'use strict';
// Node.js client for provider-gateway, built on @grpc/grpc-js and @grpc/proto-loader.
//
// The proto is loaded at run time from the package's proto/ folder, a copy of the repository's that
// scripts/gen_proto.py keeps in step (a test checks it), so the package installs on its own; no
// generated code. The public surface is camelCase with plain JSON objects (proto-loader renames the
// fields; convert.js turns Structs into objects); the wire's snake_case stays inside. Failures are
// typed errors (errors.js); `maxRetries` retries what is safe to repeat (retries.js); streams are
// ChatStreams with `textStream` and `finalMessage()` (stream.js). Types for editors are in index.d.ts.

const fs = require('node:fs');
const path = require('node:path');
const grpc = require('@grpc/grpc-js');
const protoLoader = require('@grpc/proto-loader');
const errors = require('./errors');
const { requestToWire, responseFromWire, toStruct, fromStruct } = require('./convert');
const { RetryPolicy, DEFAULT_MAX_RETRIES, sleep } = require('./retries');
const { ChatStream, assistantTurn, collect } = require('./stream');

const SERVICE = 'provider_gateway.v1.ProviderService';
const DEFAULT_TARGET = 'localhost:50051';
const PROTO_ROOT = path.join(__dirname, 'proto');

// round_robin spreads calls over every address a name resolves to (e.g. a headless Kubernetes
// Service through `dns:///`). No retryPolicy: the client retries itself (`maxRetries`, retries.js),
// honouring RetryInfo, and a second layer in the channel would multiply the attempts.
const DEFAULT_SERVICE_CONFIG = Object.freeze({ loadBalancingConfig: [{ round_robin: {} }] });

// Keepalive pings at most every 30 s; the server allows one every 10 s, so it never answers
// with GOAWAY "too_many_pings".
const DEFAULT_CHANNEL_OPTIONS = Object.freeze({
  'grpc.keepalive_time_ms': 30_000,
  'grpc.keepalive_timeout_ms': 10_000,
  'grpc.keepalive_permit_without_calls': 1,
  'grpc.max_receive_message_length': 8 * 1024 * 1024,
});

const LOADER_OPTIONS = Object.freeze({
  keepCase: false,
  longs: Number,
  enums: String,
  defaults: true,
  oneofs: true,
});

function loadPackages(protoRoot) {
  const definition = protoLoader.loadSync('provider_gateway/v1/provider_service.proto', {
    ...LOADER_OPTIONS,
    includeDirs: [protoRoot],
  });
  const health = protoLoader.loadSync('grpc/health/v1/health.proto', {
    ...LOADER_OPTIONS,
    includeDirs: [PROTO_ROOT],
  });
  return {
    gateway: grpc.loadPackageDefinition(definition).provider_gateway.v1,
    health: grpc.loadPackageDefinition(health).grpc.health.v1,
  };
}

/**
 * What a stream asks for unless its caller set `streamOptions`: the usage in the finish only, and
 * events in hand together sent as one batch; each saves messages, whose gRPC cost dwarfs a short
 * answer's. The stream still gives a usage event, and flattens the batches (stream.js). A gateway
 * that predates an option ignores it.
 */
function defaultStreamOptions() {
  return { usageInFinish: true, batchEvents: true };
}

const TRUE_WORDS = new Set(['1', 'true', 'yes', 'on']);
const env = (name) => process.env[`PROVIDER_GATEWAY_${name}`] || undefined;

/**
 * Plaintext, or TLS as the Python client configures it: `tls` (PROVIDER_GATEWAY_TLS) trusts the
 * system's CAs, `caFile` (PROVIDER_GATEWAY_CA_FILE) a PEM bundle instead and implies TLS, `certFile`
 * and `keyFile` (PROVIDER_GATEWAY_CERT_FILE, _KEY_FILE) are the client certificate for mutual TLS.
 */
function channelCredentials(options) {
  const caFile = options.caFile || env('CA_FILE');
  const certFile = options.certFile || env('CERT_FILE');
  const keyFile = options.keyFile || env('KEY_FILE');
  const tls = options.tls ?? (TRUE_WORDS.has((env('TLS') || '').toLowerCase()) || Boolean(caFile || certFile));
  // Checked before plaintext is chosen: a key file alone asks for mutual TLS, never silently skipped.
  if (Boolean(certFile) !== Boolean(keyFile)) {
    throw new Error('mutual TLS needs both a client certificate file and its key file');
  }
  if (!tls) return grpc.credentials.createInsecure();
  const read = (file) => (file ? fs.readFileSync(file) : null);
  return grpc.credentials.createSsl(read(caFile), read(keyFile), read(certFile));
}

/** The key in a secret file (PROVIDER_GATEWAY_API_KEY_FILE), surrounding whitespace stripped; '' for none. */
function keyFromFile(file) {
  if (!file) return '';
  const key = fs.readFileSync(file, 'utf8').trim();
  // Sending no key would fail later as UNAUTHENTICATED, far from the cause.
  if (!key) throw new Error(`the API key file ${file} (PROVIDER_GATEWAY_API_KEY_FILE) is empty`);
  return key;
}

/** A message of the conversation from plain text. */
function textMessage(role, text) {
  return { role, content: [{ text }] };
}

const userMessage = (text) => textMessage('ROLE_USER', text);
const systemMessage = (text) => textMessage('ROLE_SYSTEM', text);
const assistantMessage = (text) => textMessage('ROLE_ASSISTANT', text);

/**
 * Accepts the proto's ChatRequest fields, plus two shortcuts: `prompt` (a user message) and
 * `system` (a system message before it).
 */
function toChatRequest(request) {
  const { prompt, system, ...fields } = request;
  const messages = [...(fields.messages || [])];
  if (system) messages.unshift(systemMessage(system));
  if (prompt) messages.push(userMessage(prompt));
  return requestToWire({ ...fields, messages });
}

class GatewayClient {
  /**
   * @param {string} [target] gRPC target: `host:port`, `dns:///name:port`, `ipv4:a:p,b:q`; default
   *   PROVIDER_GATEWAY_TARGET, else localhost:50051.
   * @param {import('./index').ClientOptions} [options]
   */
  constructor(target = undefined, options = {}) {
    target = target || env('TARGET') || DEFAULT_TARGET;
    // Settings that can fail (a bad maxRetries, an empty key file) are read before the channel opens.
    this.apiKey = options.apiKey || env('API_KEY') || keyFromFile(env('API_KEY_FILE'));
    this.defaultDeadlineMs = options.deadlineMs ?? 60_000;
    this.retryPolicy = new RetryPolicy({ maxRetries: options.maxRetries ?? DEFAULT_MAX_RETRIES });
    const packages = loadPackages(options.protoRoot || process.env.PROVIDER_GATEWAY_PROTO_ROOT || PROTO_ROOT);
    const channelOptions = {
      ...DEFAULT_CHANNEL_OPTIONS,
      'grpc.service_config': JSON.stringify(options.serviceConfig || DEFAULT_SERVICE_CONFIG),
      ...(options.channelOptions || {}),
    };
    const credentials = options.credentials || channelCredentials(options);
    this.stub = new packages.gateway.ProviderService(target, credentials, channelOptions);
    // The health stub shares the gateway stub's channel, so both see the same connections.
    this.healthStub = new packages.health.Health(target, credentials, {
      ...channelOptions,
      channelOverride: this.stub.getChannel(),
    });
  }

  _metadata() {
    const metadata = new grpc.Metadata();
    if (this.apiKey) metadata.set('authorization', `Bearer ${this.apiKey}`);
    return metadata;
  }

  /** The call's absolute deadline (ms since the epoch), shared by all its attempts; null for none. */
  _deadline(options = {}) {
    const ms = options.deadlineMs ?? this.defaultDeadlineMs;
    return ms ? Date.now() + ms : null;
  }

  _attempt(stub, method, request, deadline, signal) {
    return new Promise((resolve, reject) => {
      const callOptions = deadline ? { deadline } : {};
      const call = stub[method](request, this._metadata(), callOptions, (error, response) =>
        error ? reject(errors.gatewayError(error)) : resolve(response),
      );
      cancelOnAbort(call, signal);
    });
  }

  async _unary(stub, method, request, options = {}) {
    const deadline = this._deadline(options);
    for (let retry = 0; ; retry++) {
      try {
        return await this._attempt(stub, method, request, deadline, options.signal);
      } catch (error) {
        const wait = this.retryPolicy.waitBeforeMs(retry, error, deadline);
        if (wait === null) throw error;
        await sleep(wait, options.signal);
      }
    }
  }

  _stream(method, request, options = {}) {
    const deadline = this._deadline(options);
    if (!request.streamOptions) request = { ...request, streamOptions: defaultStreamOptions() };
    const start = (signal) => {
      const call = this.stub[method](request, this._metadata(), deadline ? { deadline } : {});
      cancelOnAbort(call, signal);
      return call;
    };
    return new ChatStream(start, this.retryPolicy, deadline, options.signal);
  }

  /** Streams a chat answer: a ChatStream (an async iterable of events, the last `finish`). */
  chatStream(request, options) {
    return this._stream('ChatStream', toChatRequest(request), options);
  }

  /** The whole chat answer at once. */
  async chat(request, options) {
    return responseFromWire(await this._unary(this.stub, 'Chat', toChatRequest(request), options));
  }

  completeStream(request, options) {
    return this._stream('CompleteStream', requestToWire(request), options);
  }

  async complete(request, options) {
    return responseFromWire(await this._unary(this.stub, 'Complete', requestToWire(request), options));
  }

  async listModels(provider = '', options) {
    const response = await this._unary(this.stub, 'ListModels', { provider }, options);
    return response.models;
  }

  listProviders(options) {
    return this._unary(this.stub, 'ListProviders', {}, options);
  }

  countTokens(request, options) {
    return this._unary(this.stub, 'CountTokens', request, options);
  }

  async embed(request, options) {
    return responseFromWire(await this._unary(this.stub, 'Embed', request, options));
  }

  /** Standard gRPC health: '' = whole server, 'provider_gateway.v1.ProviderService', 'provider/<name>'. */
  async health(service = '', options) {
    const response = await this._unary(this.healthStub, 'Check', { service }, options);
    return response.status;
  }

  close() {
    this.stub.close();
  }
}

function cancelOnAbort(call, signal) {
  if (!signal) return;
  if (signal.aborted) {
    call.cancel();
    return;
  }
  const onAbort = () => call.cancel();
  signal.addEventListener('abort', onAbort, { once: true });
  const detach = () => signal.removeEventListener('abort', onAbort);
  call.on('status', detach);
}

module.exports = {
  ...errors,
  GatewayClient,
  ChatStream,
  RetryPolicy,
  DEFAULT_MAX_RETRIES,
  DEFAULT_SERVICE_CONFIG,
  DEFAULT_TARGET,
  SERVICE,
  collect,
  assistantTurn,
  userMessage,
  systemMessage,
  assistantMessage,
  toChatRequest,
  toStruct,
  fromStruct,
  grpc,
};
