#!/usr/bin/env node
'use strict';
// Streams a chat answer from provider-gateway to the terminal, token by token.
//
//   node examples/chat.js [--target localhost:50051] [--model mock/echo] [--events] Tell me a story
//
// Run from clients/node. The target defaults to PROVIDER_GATEWAY_TARGET, else localhost:50051
// (`provider-gateway serve`); the key to PROVIDER_GATEWAY_API_KEY.
// --events prints each stream event as one JSON line instead (for scripts and tests).
// Ctrl-C cancels the call, which stops the upstream generation on the gateway.

const { parseArgs } = require('node:util');
const { GatewayClient, GatewayError } = require('..');

async function main() {
  const { values, positionals } = parseArgs({
    allowPositionals: true,
    options: {
      target: { type: 'string', default: '' },
      model: { type: 'string', short: 'm', default: 'mock/echo' },
      system: { type: 'string', default: '' },
      'max-tokens': { type: 'string', default: '0' },
      'api-key': { type: 'string', default: '' },
      timeout: { type: 'string', default: '60' },
      events: { type: 'boolean', default: false },
    },
  });
  const prompt = positionals.join(' ') || 'Hello from Node.js';
  const client = new GatewayClient(values.target || undefined, {
    apiKey: values['api-key'],
    deadlineMs: Number(values.timeout) * 1000,
  });
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());

  const request = { model: values.model, system: values.system, prompt };
  const maxTokens = Number(values['max-tokens']);
  if (maxTokens > 0) request.maxTokens = maxTokens;

  let finish = null;
  try {
    for await (const event of client.chatStream(request, { signal: abort.signal })) {
      if (values.events) {
        process.stdout.write(`${JSON.stringify({ [event.event]: event[event.event] })}\n`);
      } else if (event.event === 'textDelta') {
        process.stdout.write(event.textDelta.text);
      } else if (event.event === 'toolCallEnd') {
        const call = event.toolCallEnd.call;
        process.stdout.write(`\n[tool call ${call.name}(${call.argumentsJson}) id=${call.id}]`);
      }
      if (event.event === 'finish') finish = event.finish;
    }
  } finally {
    client.close();
  }
  if (!values.events) {
    process.stdout.write('\n');
    if (finish) {
      const overhead = finish.timing ? finish.timing.gatewayOverheadUs : 0;
      process.stderr.write(`[${finish.provider}/${finish.model} ${finish.reason} overhead=${overhead}us]\n`);
    }
  }
}

main().catch((error) => {
  // Typed errors carry the status name, like the Python CLI prints it.
  const name = error instanceof GatewayError ? error.codeName : 'ERROR';
  process.stderr.write(`chat.js: ${name}: ${error.details || error.message}\n`);
  process.exit(1);
});
