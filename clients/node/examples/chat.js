#!/usr/bin/env node
'use strict';
// Streams a chat answer from provider-gateway to the terminal, token by token.
//
//   node examples/chat.js [--target localhost:50051] [--model mock/echo] [--events] Tell me a story
//
// --events prints each stream event as one JSON line instead (for scripts and tests).
// Ctrl-C cancels the call, which stops the upstream generation on the gateway.

const { parseArgs } = require('node:util');
const { GatewayClient, DEFAULT_TARGET } = require('..');

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      target: { type: 'string', default: process.env.PROVIDER_GATEWAY_TARGET || DEFAULT_TARGET },
      model: { type: 'string', short: 'm', default: 'mock/echo' },
      system: { type: 'string', default: '' },
      'max-tokens': { type: 'string', default: '0' },
      'api-key': { type: 'string', default: process.env.PROVIDER_GATEWAY_API_KEY || '' },
      timeout: { type: 'string', default: '60' },
      events: { type: 'boolean', default: false },
    },
  });
  const prompt = positionals.join(' ') || 'Hello from Node.js';
  const client = new GatewayClient(values.target, {
    apiKey: values['api-key'],
    deadlineMs: Number(values.timeout) * 1000,
  });
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());

  const request = { model: values.model, system: values.system, prompt };
  const maxTokens = Number(values['max-tokens']);
  if (maxTokens > 0) request.max_tokens = maxTokens;

  let finish = null;
  try {
    for await (const event of client.chatStream(request, { signal: abort.signal })) {
      if (values.events) {
        process.stdout.write(`${JSON.stringify({ [event.event]: event[event.event] })}\n`);
      } else if (event.event === 'text_delta') {
        process.stdout.write(event.text_delta.text);
      } else if (event.event === 'tool_call_end') {
        const call = event.tool_call_end.call;
        process.stdout.write(`\n[tool call ${call.name}(${call.arguments_json}) id=${call.id}]`);
      }
      if (event.event === 'finish') finish = event.finish;
    }
  } finally {
    client.close();
  }
  if (!values.events) {
    process.stdout.write('\n');
    if (finish) {
      const overhead = finish.timing ? finish.timing.gateway_overhead_us : 0;
      process.stderr.write(`[${finish.provider}/${finish.model} ${finish.reason} overhead=${overhead}us]\n`);
    }
  }
}

main().catch((error) => {
  // grpc-js errors carry a numeric code; print its name like the Python CLI does.
  const { status } = require('@grpc/grpc-js');
  const name = Object.keys(status).find((key) => status[key] === error.code);
  process.stderr.write(`chat.js: ${name || 'ERROR'}: ${error.details || error.message}\n`);
  process.exit(1);
});
