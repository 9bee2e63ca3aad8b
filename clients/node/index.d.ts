// Types for the provider-gateway Node.js client. Field names are camelCase (the proto's snake_case
// stays on the wire); enums are their value names as strings; int64 fields are numbers; Struct
// fields (tool parameters, JSON schemas, provider options, raw usage) are plain JSON objects.
import type { ChannelCredentials, ChannelOptions, ClientReadableStream, ServiceError } from '@grpc/grpc-js';

export * as grpc from '@grpc/grpc-js';

export type Role = 'ROLE_UNSPECIFIED' | 'ROLE_SYSTEM' | 'ROLE_USER' | 'ROLE_ASSISTANT' | 'ROLE_TOOL';
/** A value newer than this client's proto (proto3 enums are open) comes as its number. */
export type FinishReason =
  | 'FINISH_REASON_UNSPECIFIED'
  | 'FINISH_REASON_STOP'
  | 'FINISH_REASON_LENGTH'
  | 'FINISH_REASON_TOOL_CALLS'
  | 'FINISH_REASON_CONTENT_FILTER'
  | 'FINISH_REASON_OTHER'
  | number;
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
export type JsonObject = { [key: string]: unknown };

export interface ToolCall {
  id: string;
  name: string;
  argumentsJson: string;
  /** Output only: the arguments are not whole (cut by max_tokens, or not valid JSON); they hold
   * what arrived. Set on `tool_call_end.call` and `ChatResponse.tool_calls`; ignored in requests. */
  incomplete?: boolean;
}
export interface ToolResult {
  toolCallId: string;
  content: string;
  isError?: boolean;
  name?: string;
}
export interface Image {
  data?: Uint8Array;
  url?: string;
  mediaType?: string;
}
export interface ContentPart {
  text?: string;
  image?: Image;
  toolCall?: ToolCall;
  toolResult?: ToolResult;
  reasoning?: ReasoningPart;
  cacheBreakpoint?: boolean;
}
/** One reasoning block with the provider's opaque state, replayed in the next turn unchanged. */
export interface ReasoningPart {
  text: string;
  signature?: string;
  /** The provider returned the block only encrypted: `text` is empty, `signature` holds the data. */
  redacted?: boolean;
  /** The provider's id of the reasoning item (OpenAI Responses). */
  id?: string;
  /** Who issued `signature` (e.g. 'anthropic', 'bedrock', 'gemini'), set by the gateway: send it back. */
  issuer?: string;
}
export interface Message {
  role: Role;
  content: ContentPart[];
  name?: string;
}
export interface Tool {
  name: string;
  description?: string;
  parameters?: JsonObject;
}

export interface ChatRequest {
  model?: string;
  provider?: string;
  fallbacks?: string[];
  messages?: Message[];
  tools?: Tool[];
  toolChoice?: {
    mode?: 'MODE_UNSPECIFIED' | 'MODE_AUTO' | 'MODE_NONE' | 'MODE_REQUIRED' | 'MODE_TOOL';
    name?: string;
  };
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string[];
  reasoning?: {
    enabled?: boolean;
    effort?: 'EFFORT_UNSPECIFIED' | 'EFFORT_MINIMAL' | 'EFFORT_LOW' | 'EFFORT_MEDIUM' | 'EFFORT_HIGH';
    budgetTokens?: number;
  };
  responseFormat?: {
    type?: 'TYPE_UNSPECIFIED' | 'TYPE_TEXT' | 'TYPE_JSON_OBJECT' | 'TYPE_JSON_SCHEMA';
    schemaName?: string;
    jsonSchema?: JsonObject;
    strict?: boolean;
  };
  providerOptions?: JsonObject;
  metadata?: { [key: string]: string };
  /** How a stream's events are sent; `chatStream` asks for `{ usageInFinish: true, batchEvents: true }`
   * unless set (a caller's own options are sent as given). */
  streamOptions?: StreamOptions;
  /** Token log-probabilities of the answer's text (see the proto's LogprobsOptions). */
  logprobs?: { enabled?: boolean; topLogprobs?: number };
  /** Shortcut: appended as a user message. */
  prompt?: string;
  /** Shortcut: prepended as a system message. */
  system?: string;
}

export interface CompleteRequest {
  model?: string;
  provider?: string;
  fallbacks?: string[];
  prompt: string;
  temperature?: number;
  topP?: number;
  maxTokens?: number;
  stop?: string[];
  providerOptions?: JsonObject;
  metadata?: { [key: string]: string };
  /** How a stream's events are sent; `completeStream` asks for `{ usageInFinish: true, batchEvents: true }`
   * unless set (a caller's own options are sent as given). */
  streamOptions?: StreamOptions;
  /** Token log-probabilities of the completion's text, as `ChatRequest.logprobs`. */
  logprobs?: { enabled?: boolean; topLogprobs?: number };
}

/** How a stream's events are sent (see the proto's StreamOptions). */
export interface StreamOptions {
  /** The usage only in `finish.usage`, no `usage` events: one message fewer per stream. The
   * stream still yields a `usage` event before `finish`, made from it. */
  usageInFinish?: boolean;
  /** Events the gateway has in hand together may come as one message (a `batch`): fewer messages,
   * each of which costs CPU on both ends. A ChatStream yields the batch's events one by one, as if
   * each had come alone; it never yields a batch. */
  batchEvents?: boolean;
}

export interface Usage {
  inputTokens: number;
  outputTokens: number;
  cacheReadTokens: number;
  cacheWriteTokens: number;
  reasoningTokens: number;
  totalTokens: number;
  raw: JsonObject | null;
  estimated: boolean;
  /** The tier the provider served the request on ("standard", "flex", "priority"...; "" when it named none). */
  serviceTier: string;
}
export interface Timing {
  gatewayOverheadUs: number;
  timeToFirstTokenUs: number;
  totalUs: number;
  upstreamUs: number;
}
/** What usage cost by the gateway's price table: `known` false means unknown, never 0. */
export interface Cost {
  amountMicros: number;
  currency: string;
  known: boolean;
  usageSource: string;
}
export interface Attempt {
  provider: string;
  model: string;
  outcome: string;
  error: string;
  latencyUs: number;
  cost: Cost | null;
}
export interface Finish {
  reason: FinishReason;
  rawFinishReason: string;
  provider: string;
  model: string;
  timing: Timing | null;
  attempts: Attempt[];
  responseId: string;
  /** The request's cost: its attempts' together. */
  cost: Cost | null;
  /** The request fields the provider could not honour natively and the gateway emulated, named as
   * in ChatRequest (e.g. `response_format`); empty when all were honoured natively. */
  emulated: string[];
  /** A stream's usage (the same as its last `usage` event); null in unary answers and when the
   * stream reported none. */
  usage: Usage | null;
}

/** One generated token and its log-probability (see the proto's TokenLogprob). */
export interface TokenLogprob {
  token: string;
  logprob: number;
  /** The token's UTF-8 bytes where the provider gives them (OpenAI); absent otherwise. */
  bytes?: Buffer;
  /** The most likely tokens at this position, most likely first. */
  topLogprobs: TokenLogprob[];
}

/** One streamed event; `event` names the field that is set. */
export type StreamEvent =
  | {
      event: 'textDelta';
      /** `logprobs`: the entries of the tokens of `text`, when the request asked for them. */
      textDelta: { text: string; logprobs: TokenLogprob[] };
    }
  | {
      event: 'reasoningDelta';
      /** A delta with `signature`, `redacted` or `id` closes a reasoning block. */
      reasoningDelta: { text: string; signature: string; redacted: boolean; id: string; issuer: string };
    }
  | { event: 'toolCallStart'; toolCallStart: { index: number; id: string; name: string } }
  | { event: 'toolCallDelta'; toolCallDelta: { index: number; argumentsDelta: string } }
  | { event: 'toolCallEnd'; toolCallEnd: { index: number; call: ToolCall } }
  | { event: 'usage'; usage: Usage }
  | { event: 'finish'; finish: Finish }
  | { event: 'rawContent'; rawContent: RawContent };

/** Two or more events sent as one message (`streamOptions.batchEvents`), in order; a finish, when
 * in it, is its last event. Only the wire and `ChatStream.call` carry these: a ChatStream yields
 * their events one by one, and `collect()` reads them so too. */
export interface StreamEventBatch {
  event: 'batch';
  batch: { events: StreamEvent[] };
}

/** Provider output with no typed field yet, as the provider sent it. */
export interface RawContent {
  type: string;
  raw: JsonObject | null;
}

export interface ChatResponse {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  usage: Usage | null;
  finish: Finish | null;
  reasoningSignature: string;
  reasoningParts: Required<ReasoningPart>[];
  rawContent: RawContent[];
  /** The log-probability of each token of `text`, when the request asked for them. */
  logprobs: TokenLogprob[];
}
export interface CompleteResponse {
  text: string;
  usage: Usage | null;
  finish: Finish | null;
  /** The log-probability of each token of `text`, when the request asked for them. */
  logprobs: TokenLogprob[];
}
export interface ModelInfo {
  id: string;
  provider: string;
  displayName: string;
  contextWindow: number;
  maxOutputTokens: number;
  vision: boolean;
  tools: boolean;
  reasoning: boolean;
  embeddings: boolean;
  aliases: string[];
}
export interface CountTokensRequest {
  model?: string;
  provider?: string;
  text?: string;
  messages?: Message[];
  tools?: Tool[];
}
export interface CountTokensResponse {
  inputTokens: number;
  estimated: boolean;
  provider: string;
  model: string;
}
export interface EmbedRequest {
  model?: string;
  provider?: string;
  inputs: string[];
  dimensions?: number;
}
export interface EmbedResponse {
  embeddings: { index: number; values: number[] }[];
  usage: Usage | null;
  provider: string;
  model: string;
}
export interface Capabilities {
  maxTokens: number;
  streaming: boolean;
  tools: boolean;
  vision: boolean;
  embeddings: boolean;
  reasoning: boolean;
  jsonOutput: boolean;
  exactTokenCount: boolean;
  rateLimits: { requestsPerMinute: number; tokensPerMinute: number; maxConcurrent: number } | null;
  completion: boolean;
}
export interface ProviderInfo {
  name: string;
  kind: string;
  health: 'PROVIDER_HEALTH_UNSPECIFIED' | 'PROVIDER_HEALTH_SERVING' | 'PROVIDER_HEALTH_NOT_SERVING';
  healthMessage: string;
  capabilities: Capabilities | null;
  breakerState: string;
}
export interface ListProvidersResponse {
  providers: ProviderInfo[];
  defaultProvider: string;
}

export interface ClientOptions {
  /** Wins over the TLS options below; e.g. grpc.credentials.createSsl(...). */
  credentials?: ChannelCredentials;
  /** TLS trusting the system's CAs; default PROVIDER_GATEWAY_TLS (1/true/yes/on), else on when a CA
   * or certificate file is set, else plaintext. */
  tls?: boolean;
  /** PEM CA bundle to trust (implies TLS); default PROVIDER_GATEWAY_CA_FILE. */
  caFile?: string;
  /** PEM client certificate for mutual TLS, with `keyFile`; default PROVIDER_GATEWAY_CERT_FILE. */
  certFile?: string;
  /** PEM private key of `certFile`; default PROVIDER_GATEWAY_KEY_FILE. */
  keyFile?: string;
  /** Sent as `authorization: Bearer <key>` when the server requires gateway keys; default
   * PROVIDER_GATEWAY_API_KEY, else the file named by PROVIDER_GATEWAY_API_KEY_FILE. */
  apiKey?: string;
  /** Deadline of each call in milliseconds unless the call sets its own; 0 = none. Default 60000. */
  deadlineMs?: number;
  /** Retries of a call that failed with UNAVAILABLE, a rate limit (RESOURCE_EXHAUSTED) or a CANCELLED
   * this client did not ask for (a call a stopping server's gRPC ended before it ran), waiting
   * with jittered exponential backoff, or at least the RetryInfo delay; a stream only before its
   * first event. The call's deadline bounds all its attempts. Default 2; 0 turns retrying off. */
  maxRetries?: number;
  /** Replaces DEFAULT_SERVICE_CONFIG (round robin; no channel retries, `maxRetries` does them). */
  serviceConfig?: JsonObject;
  /** Extra or overriding channel options. */
  channelOptions?: ChannelOptions;
  /** Folder holding provider_gateway/v1/provider_service.proto; default the repository's proto/. */
  protoRoot?: string;
}

export interface CallOptions {
  /** Deadline of the whole call, its retries included. */
  deadlineMs?: number;
  /** Aborting cancels the call (or the wait before a retry); the gateway then stops the upstream request. */
  signal?: AbortSignal;
}

/** A tool call of a streamed answer, its arguments parsed. `incomplete`: cut by max_tokens or not a
 * JSON object; `arguments` is then `{}` and `argumentsJson` holds what arrived: do not run the tool. */
export interface ParsedToolCall {
  id: string;
  name: string;
  argumentsJson: string;
  incomplete: boolean;
  arguments: JsonObject;
}

/** A stream's whole answer, as `finalMessage()` and `collect()` build it: the unary ChatResponse's
 * fields, tool calls with parsed arguments. */
export interface FinalMessage {
  text: string;
  reasoning: string;
  reasoningParts: Required<ReasoningPart>[];
  toolCalls: ParsedToolCall[];
  usage: Usage | null;
  finish: Finish | null;
  rawContent: RawContent[];
  /** The log-probability of each token of `text`, when the request asked for them. */
  logprobs: TokenLogprob[];
}
/** @deprecated the name of `FinalMessage` before the stream helper. */
export type Collected = FinalMessage;

export interface ChatStreamListeners {
  event: (event: StreamEvent) => void;
  text: (delta: string, textSoFar: string) => void;
  reasoning: (delta: string, reasoningSoFar: string) => void;
  toolCall: (call: ParsedToolCall) => void;
}

/** What `chatStream` and `completeStream` return. Leaving a `for await` early, `cancel()` or the
 * call's AbortSignal cancels the call; a failed stream throws a GatewayError. */
export class ChatStream implements AsyncIterable<StreamEvent> {
  [Symbol.asyncIterator](): AsyncGenerator<StreamEvent, void, undefined>;
  /** Only the answer text, piece by piece (the other events still count for `finalMessage()`). */
  readonly textStream: AsyncGenerator<string, void, undefined>;
  /** Called as events pass, whoever reads the stream. */
  on<K extends keyof ChatStreamListeners>(name: K, listener: ChatStreamListeners[K]): this;
  /** Reads the rest of the stream; the whole answer, `finish` included. Rejects with what ended the
   * stream: UNAVAILABLE when it ended without a `finish`, CANCELLED when it was left early. */
  finalMessage(): Promise<FinalMessage>;
  finalText(): Promise<string>;
  cancel(): void;
  /** The grpc-js stream of the current attempt (null before the first); its messages are the wire's,
   * batches (`StreamEventBatch`) included. */
  readonly call: ClientReadableStream<unknown> | null;
}

export class GatewayClient {
  /** `target` defaults to PROVIDER_GATEWAY_TARGET, else localhost:50051. */
  constructor(target?: string, options?: ClientOptions);
  chatStream(request: ChatRequest, options?: CallOptions): ChatStream;
  chat(request: ChatRequest, options?: CallOptions): Promise<ChatResponse>;
  completeStream(request: CompleteRequest, options?: CallOptions): ChatStream;
  complete(request: CompleteRequest, options?: CallOptions): Promise<CompleteResponse>;
  listModels(provider?: string, options?: CallOptions): Promise<ModelInfo[]>;
  listProviders(options?: CallOptions): Promise<ListProvidersResponse>;
  countTokens(request: CountTokensRequest, options?: CallOptions): Promise<CountTokensResponse>;
  embed(request: EmbedRequest, options?: CallOptions): Promise<EmbedResponse>;
  health(service?: string, options?: CallOptions): Promise<ServingStatus>;
  close(): void;
}

/** What every failed call rejects with (and a failed stream throws). */
export class GatewayError extends Error {
  /** The grpc.status number (e.g. 5 for NOT_FOUND). */
  code: number;
  /** The status name: 'NOT_FOUND', 'RESOURCE_EXHAUSTED'... */
  codeName: string;
  /** The gateway's message. */
  details: string;
  /** Seconds the gateway asked to wait before trying again (RetryInfo), or null. */
  retryAfter: number | null;
  /** The gateway said a retry would fail the same way (`grpc-retry-pushback-ms` below zero): the
   * provider told it so, and it has no other to ask. `maxRetries` then makes no retry. */
  doNotRetry: boolean;
  /** The grpc-js ServiceError. */
  cause: ServiceError;
}
/** RESOURCE_EXHAUSTED: a rate limit or quota; see `retryAfter`. */
export class RateLimitError extends GatewayError {}
/** NOT_FOUND: no such model or provider. */
export class NotFoundError extends GatewayError {}
/** PERMISSION_DENIED: the key may not use this model or provider. */
export class PermissionDeniedError extends GatewayError {}
/** UNAUTHENTICATED: no gateway key, or a wrong one. */
export class AuthenticationError extends GatewayError {}
/** INVALID_ARGUMENT or FAILED_PRECONDITION. */
export class InvalidRequestError extends GatewayError {}
/** UNAVAILABLE. */
export class UnavailableError extends GatewayError {}
/** DEADLINE_EXCEEDED: `deadlineMs` passed. */
export class DeadlineExceededError extends GatewayError {}
export function gatewayError(error: ServiceError): GatewayError;

export const DEFAULT_SERVICE_CONFIG: JsonObject;
export const DEFAULT_TARGET: string;
export const SERVICE: string;
/** The whole answer of a stream, batches read as their events; rejects with UnavailableError when it
 * ended without its `finish`. */
export function collect(stream: AsyncIterable<StreamEvent | StreamEventBatch>): Promise<FinalMessage>;
/** An answer (`chat()`'s or `finalMessage()`'s) as the assistant turn of the next request:
 * reasoning blocks, text, tool calls. */
export function assistantTurn(answer: {
  text: string;
  reasoningParts?: ReasoningPart[];
  toolCalls?: ToolCall[];
}): Message;

export const DEFAULT_MAX_RETRIES: number;
/** The retry policy `maxRetries` configures (exported for tests and custom loops). */
export class RetryPolicy {
  constructor(options?: { maxRetries?: number; initialBackoffMs?: number; maxBackoffMs?: number });
  maxRetries: number;
  /** Milliseconds to wait before retry number `retry` (0 first), or null to give up. */
  waitBeforeMs(retry: number, error: GatewayError, deadline: number | null): number | null;
}
export function userMessage(text: string): Message;
export function systemMessage(text: string): Message;
export function assistantMessage(text: string): Message;
export function toChatRequest(request: ChatRequest): ChatRequest;
export function toStruct(object: JsonObject): unknown;
export function fromStruct(struct: unknown): JsonObject | null;
