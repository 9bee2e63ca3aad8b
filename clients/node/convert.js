'use strict';
// Between the public surface (camelCase, plain JSON objects) and the wire's messages: proto-loader
// already turns field names into camelCase; google.protobuf.Struct fields (tool parameters, JSON
// schemas, provider options, the provider's raw usage) are plain objects here, Structs on the wire.

function toValue(value) {
  if (value === null || value === undefined) return { nullValue: 'NULL_VALUE' };
  if (typeof value === 'number') return { numberValue: value };
  if (typeof value === 'string') return { stringValue: value };
  if (typeof value === 'boolean') return { boolValue: value };
  if (Array.isArray(value)) return { listValue: { values: value.map(toValue) } };
  return { structValue: toStruct(value) };
}

/** A plain object as a google.protobuf.Struct. */
function toStruct(object) {
  return { fields: Object.fromEntries(Object.entries(object).map(([key, value]) => [key, toValue(value)])) };
}

function fromValue(value) {
  switch (value && value.kind) {
    case 'numberValue':
      return value.numberValue;
    case 'stringValue':
      return value.stringValue;
    case 'boolValue':
      return value.boolValue;
    case 'listValue':
      return (value.listValue.values || []).map(fromValue);
    case 'structValue':
      return fromStruct(value.structValue);
    default:
      return null;
  }
}

/** A google.protobuf.Struct as a plain object (null stays null). */
function fromStruct(struct) {
  if (!struct) return null;
  return Object.fromEntries(Object.entries(struct.fields || {}).map(([key, value]) => [key, fromValue(value)]));
}

const withStruct = (object, key) =>
  object && object[key] && !object[key].fields ? { ...object, [key]: toStruct(object[key]) } : object;

/** A request's plain-object Structs as Structs (a Struct given as such passes unchanged). */
function requestToWire(request) {
  const wire = withStruct(request, 'providerOptions');
  if (wire.tools) wire.tools = wire.tools.map((tool) => withStruct(tool, 'parameters'));
  if (wire.responseFormat) wire.responseFormat = withStruct(wire.responseFormat, 'jsonSchema');
  return wire;
}

const plainUsage = (usage) => usage && { ...usage, raw: fromStruct(usage.raw) };
const plainRawContent = (raw) => raw && { ...raw, raw: fromStruct(raw.raw) };

/** A ChatResponse, CompleteResponse or EmbedResponse with plain usage and raw content. */
function responseFromWire(response) {
  const plain = { ...response };
  if ('usage' in plain) plain.usage = plainUsage(plain.usage);
  if (plain.rawContent) plain.rawContent = plain.rawContent.map(plainRawContent);
  return plain;
}

/**
 * The events one StreamEvent message holds, in order: a batch's (`streamOptions.batchEvents`), else
 * the message itself. The proto never nests batches; flattening one anyway reads it as the
 * messages it stands for.
 */
function unbatched(message) {
  return message.event === 'batch' ? message.batch.events.flatMap(unbatched) : [message];
}

/** A StreamEvent with plain usage and raw content; `event` names the field that is set. */
function eventFromWire(event) {
  if (event.event === 'usage') return { event: 'usage', usage: plainUsage(event.usage) };
  if (event.event === 'rawContent') return { event: 'rawContent', rawContent: plainRawContent(event.rawContent) };
  if (event.event === 'finish' && event.finish.usage) {
    return { event: 'finish', finish: { ...event.finish, usage: plainUsage(event.finish.usage) } };
  }
  return { event: event.event, [event.event]: event[event.event] };
}

module.exports = { toStruct, fromStruct, requestToWire, responseFromWire, eventFromWire, unbatched };
