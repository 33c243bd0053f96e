// A gateway on the no-op backend (src/backends/noop.ts), in its own process so the measuring
// client and the gateway do not share one event loop; plus a bare node:http server answering
// every request with a small JSON body, the floor for "HTTP round trip on loopback in node".
// Prints one line `ready <gatewayUrl> <bareUrl> <apiKey>` on stdout; SIGINT drains and exits.
//
//   node --import tsx bench/lib/noop-server.ts <templatesRoot>
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startApp } from '../../src/app.ts';
import { NoopBackend } from '../../src/backends/noop.ts';
import { parseServeArgs } from '../../src/config.ts';
import { createLogger } from '../../src/log.ts';

const templatesRoot = process.argv[2];
if (!templatesRoot) throw new Error('usage: noop-server.ts <templatesRoot>');
const stateDir = mkdtempSync(join(tmpdir(), 'coppice-bench-noop-'));
const key = `bench-${randomBytes(12).toString('hex')}`;
const config = parseServeArgs(['--listen', '127.0.0.1:0', '--state-dir', stateDir, '--templates-root', templatesRoot]);
const app = await startApp(config, { logger: createLogger('silent'), apiKey: key, backends: { jail: new NoopBackend() } });
while (app.gateway.lifecycle === 'starting') await new Promise((r) => setTimeout(r, 5));

// The floor: parse the request, answer JSON, nothing else (it reads the body like the edge does).
const bare = createServer((req, res) => {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    const text = JSON.stringify({ sandboxID: 'aaaaaaaaaa', state: 'running', n: chunks.length });
    res.writeHead(req.method === 'DELETE' ? 204 : 201, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) });
    res.end(req.method === 'DELETE' ? undefined : text);
  });
});
bare.keepAliveTimeout = 65_000;
await new Promise<void>((r) => bare.listen(0, '127.0.0.1', r));
const bareUrl = `http://127.0.0.1:${(bare.address() as AddressInfo).port}`;

let stopping = false;
const stop = async () => {
  if (stopping) return;
  stopping = true;
  bare.closeAllConnections();
  bare.close();
  await app.close();
  rmSync(stateDir, { recursive: true, force: true });
  process.exit(0);
};
process.on('SIGINT', () => void stop());
process.on('SIGTERM', () => void stop());
process.stdout.write(`ready ${app.url} ${bareUrl} ${key}\n`);
