// Types for the provider-gateway Node.js client. Field names are the proto's snake_case names;
// enums are their value names as strings; int64 fields are numbers.
import type { ChannelCredentials, ChannelOptions, ClientReadableStream, ServiceError } from '@grpc/grpc-js';

export * as grpc from '@grpc/grpc-js';

export type Role = 'ROLE_UNSPECIFIED' | 'ROLE_SYSTEM' | 'ROLE_USER' | 'ROLE_ASSISTANT' | 'ROLE_TOOL';
export type FinishReason =
  | 'FINISH_REASON_UNSPECIFIED'
  | 'FINISH_REASON_STOP'
  | 'FINISH_REASON_LENGTH'
  | 'FINISH_REASON_TOOL_CALLS'
  | 'FINISH_REASON_CONTENT_FILTER'
  | 'FINISH_REASON_OTHER';
export type ServingStatus = 'UNKNOWN' | 'SERVING' | 'NOT_SERVING' | 'SERVICE_UNKNOWN';
export type JsonObject = { [key: string]: unknown };
/** google.protobuf.Struct as proto-loader represents it. */
export interface Struct {
  fields: { [key: string]: unknown };
}

export interface ToolCall {
  id: string;
  name: string;
  arguments_json: string;
  /** Output only: the arguments are not whole (cut by max_tokens, or not valid JSON); they hold
   * what arrived. Set on `tool_call_end.call` and `ChatResponse.tool_calls`; ignored in requests. */
  incomplete?: boolean;
}
export interface ToolResult {
  tool_call_id: string;
  content: string;
  is_error?: boolean;
  name?: string;
}
export interface Image {
  data?: Uint8Array;
  url?: string;
  media_type?: string;
}
export interface ContentPart {
  text?: string;
  image?: Image;
  tool_call?: ToolCall;
  tool_result?: ToolResult;
  reasoning?: { text: string; signature?: string };
  cache_breakpoint?: boolean;
}
export interface Message {
  role: Role;
  content: ContentPart[];
  name?: string;
}
export interface Tool {
  name: string;
  description?: string;
  parameters?: Struct;
}

export interface ChatRequest {
  model?: string;
  provider?: string;
  fallbacks?: string[];
  messages?: Message[];
  tools?: Tool[];
  tool_choice?: {
    mode?: 'MODE_UNSPECIFIED' | 'MODE_AUTO' | 'MODE_NONE' | 'MODE_REQUIRED' | 'MODE_TOOL';
    name?: string;
  };
  temperature?: number;
  top_p?: number;
  max_tokens?: number;
  stop?: string[];
  reasoning?: {
    enabled?: boolean;
    effort?: 'EFFORT_UNSPECIFIED' | 'EFFORT_MINIMAL' | 'EFFORT_LOW' | 'EFFORT_MEDIUM' | 'EFFORT_HIGH';
    budget_tokens?: number;
  };
  response_format?: {
    type?: 'TYPE_UNSPECIFIED' | 'TYPE_TEXT' | 'TYPE_JSON_OBJECT' | 'TYPE_JSON_SCHEMA';
    schema_name?: string;
    json_schema?: Struct;
    strict?: boolean;
  };
  provider_options?: Struct;
  metadata?: { [key: string]: string };
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
  top_p?: number;
  max_tokens?: number;
  stop?: string[];
  provider_options?: Struct;
  metadata?: { [key: string]: string };
}

export interface Usage {
  input_tokens: number;
  output_tokens: number;
  cache_read_tokens: number;
  cache_write_tokens: number;
  reasoning_tokens: number;
  total_tokens: number;
  raw: Struct | null;
  estimated: boolean;
}
export interface Timing {
  gateway_overhead_us: number;
  time_to_first_token_us: number;
  total_us: number;
  upstream_us: number;
}
export interface Attempt {
  provider: string;
  model: string;
  outcome: string;
  error: string;
  latency_us: number;
}
export interface Finish {
  reason: FinishReason;
  raw_finish_reason: string;
  provider: string;
  model: string;
  timing: Timing | null;
  attempts: Attempt[];
  response_id: string;
}

/** One streamed event; `event` names the field that is set. */
export type StreamEvent =
  | { event: 'text_delta'; text_delta: { text: string } }
  | { event: 'reasoning_delta'; reasoning_delta: { text: string; signature: string } }
  | { event: 'tool_call_start'; tool_call_start: { index: number; id: string; name: string } }
  | { event: 'tool_call_delta'; tool_call_delta: { index: number; arguments_delta: string } }
  | { event: 'tool_call_end'; tool_call_end: { index: number; call: ToolCall } }
  | { event: 'usage'; usage: Usage }
  | { event: 'finish'; finish: Finish };

export interface ChatResponse {
  text: string;
  reasoning: string;
  tool_calls: ToolCall[];
  usage: Usage | null;
  finish: Finish | null;
  reasoning_signature: string;
}
export interface CompleteResponse {
  text: string;
  usage: Usage | null;
  finish: Finish | null;
}
export interface ModelInfo {
  id: string;
  provider: string;
  display_name: string;
  context_window: number;
  max_output_tokens: number;
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
  input_tokens: number;
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
export interface ProviderInfo {
  name: string;
  kind: string;
  health: 'PROVIDER_HEALTH_UNSPECIFIED' | 'PROVIDER_HEALTH_SERVING' | 'PROVIDER_HEALTH_NOT_SERVING';
  health_message: string;
  capabilities: JsonObject | null;
  breaker_state: string;
}
export interface ListProvidersResponse {
  providers: ProviderInfo[];
  default_provider: string;
}

export interface ClientOptions {
  /** Default: insecure (plaintext). Use grpc.credentials.createSsl() for TLS. */
  credentials?: ChannelCredentials;
  /** Sent as `authorization: Bearer <key>` when the server requires gateway keys. */
  apiKey?: string;
  /** Deadline of each call in milliseconds unless the call sets its own; 0 = none. Default 60000. */
  deadlineMs?: number;
  /** Replaces DEFAULT_SERVICE_CONFIG (round robin, retry UNAVAILABLE on unary calls). */
  serviceConfig?: JsonObject;
  /** Extra or overriding channel options. */
  channelOptions?: ChannelOptions;
  /** Folder holding provider_gateway/v1/provider_service.proto; default the repository's proto/. */
  protoRoot?: string;
}

export interface CallOptions {
  deadlineMs?: number;
  /** Aborting cancels the call; the gateway then stops the upstream request. */
  signal?: AbortSignal;
}

export interface Collected {
  text: string;
  reasoning: string;
  toolCalls: ToolCall[];
  usage: Usage | null;
  finish: Finish | null;
}

export class GatewayClient {
  constructor(target?: string, options?: ClientOptions);
  chatStream(request: ChatRequest, options?: CallOptions): ClientReadableStream<StreamEvent> & AsyncIterable<StreamEvent>;
  chat(request: ChatRequest, options?: CallOptions): Promise<ChatResponse>;
  completeStream(
    request: CompleteRequest,
    options?: CallOptions,
  ): ClientReadableStream<StreamEvent> & AsyncIterable<StreamEvent>;
  complete(request: CompleteRequest, options?: CallOptions): Promise<CompleteResponse>;
  listModels(provider?: string, options?: CallOptions): Promise<ModelInfo[]>;
  listProviders(options?: CallOptions): Promise<ListProvidersResponse>;
  countTokens(request: CountTokensRequest, options?: CallOptions): Promise<CountTokensResponse>;
  embed(request: EmbedRequest, options?: CallOptions): Promise<EmbedResponse>;
  health(service?: string, options?: CallOptions): Promise<ServingStatus>;
  close(): void;
}

/** Errors are grpc-js ServiceErrors: `code` is a grpc.status number, `details` the message. */
export type GatewayError = ServiceError;

export const DEFAULT_SERVICE_CONFIG: JsonObject;
export const DEFAULT_TARGET: string;
export const SERVICE: string;
export function collect(stream: AsyncIterable<StreamEvent>): Promise<Collected>;
export function userMessage(text: string): Message;
export function systemMessage(text: string): Message;
export function assistantMessage(text: string): Message;
export function toChatRequest(request: ChatRequest): ChatRequest;
