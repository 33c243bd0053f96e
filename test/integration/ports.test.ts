// Ports inside a real sandbox through the gateway: host-based (`<port>-<id>.<domain>`) and by
// E2B's headers (E2b-Sandbox-Id + E2b-Sandbox-Port), streamed both ways, upgrades piped, a client
// that goes away aborting upstream, E2B's 502 for a closed port, no gateway key reaching the sandbox.
import assert from 'node:assert/strict';
import { request, type IncomingMessage } from 'node:http';
import type { Socket } from 'node:net';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from 'e2b';
import { Sandbox as CoppiceSandbox } from '../../src/sdk/index.ts';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

const SERVER = String.raw`
import http.server, socketserver, json, time, sys
class H(http.server.BaseHTTPRequestHandler):
    def log_message(self, *a): pass
    def do_GET(self):
        if self.path == '/headers':
            body = json.dumps(dict(self.headers)).encode()
            self.send_response(200); self.send_header('content-length', str(len(body))); self.end_headers(); self.wfile.write(body)
        elif self.path == '/stream':
            self.send_response(200); self.end_headers()
            try:
                for i in range(600):
                    self.wfile.write(b'tick\n'); self.wfile.flush(); time.sleep(0.05)
            except (BrokenPipeError, ConnectionResetError):
                open('/tmp/aborted', 'w').write('yes')
        elif self.headers.get('upgrade') == 'echo':
            self.wfile.write(b'HTTP/1.1 101 Switching Protocols\r\nupgrade: echo\r\nconnection: upgrade\r\n\r\n'); self.wfile.flush()
            while True:
                b = self.rfile.read1(65536)
                if not b: break
                self.wfile.write(b); self.wfile.flush()
        else:
            self.send_response(404); self.end_headers()
    def do_POST(self):
        n = int(self.headers['content-length']); data = self.rfile.read(n)
        self.send_response(200); self.send_header('content-length', str(len(data))); self.end_headers(); self.wfile.write(data[::-1])
class S(socketserver.ThreadingMixIn, http.server.HTTPServer): daemon_threads = True
S(('0.0.0.0', int(sys.argv[1])), H).serve_forever()
`;

function raw(url: string, opts: { path: string; method?: string; headers?: Record<string, string>; body?: string }): Promise<{ status: number; text: string; res: IncomingMessage }> {
  const u = new URL(url);
  return new Promise((resolve, reject) => {
    const req = request({ host: u.hostname, port: u.port, path: opts.path, method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      let text = '';
      res.on('data', (c) => (text += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, text, res }));
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

describe('sandbox ports through the gateway (real sandbox, --domain localhost)', () => {
  let gw: TestGateway;
  let id = '';
  let host = '';
  before(async () => {
    gw = await startTestGateway(['--domain', 'localhost']);
    const c = await gw.api('POST', '/sandboxes', { templateID: 'base' });
    assert.equal(c.status, 201, JSON.stringify(c.body));
    id = c.body.sandboxID;
    const w = await gw.api('POST', `/sandboxes/${id}/exec`, { argv: ['sh', '-c', 'cat > /tmp/srv.py'], stdin: SERVER });
    assert.equal(w.body.exitCode, 0, JSON.stringify(w.body));
    const s = await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'nohup python3 /tmp/srv.py 8000 >/dev/null 2>&1 &' });
    assert.equal(s.body.exitCode, 0);
    host = `8000-${id}.localhost:${new URL(gw.url).port}`;
    // Started when it answers (a fact to wait for, not a timing).
    for (let i = 0; i < 200; i++) {
      const r = await raw(gw.url, { path: '/headers', headers: { host } });
      if (r.status === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  after(async () => {
    await gw.api('DELETE', `/sandboxes/${id}`);
    await gw.close();
  });

  test('host-based: GET and a POST body are relayed, the answer streams back', async () => {
    const g = await raw(gw.url, { path: '/headers', headers: { host } });
    assert.equal(g.status, 200, g.text);
    assert.equal(JSON.parse(g.text).Host ?? JSON.parse(g.text).host, host);
    const p = await raw(gw.url, { path: '/echo', method: 'POST', headers: { host, 'content-type': 'text/plain' }, body: 'abcdef' });
    assert.equal(p.text, 'fedcba');
  });

  test('E2B headers on the gateway URL reach the same port', async () => {
    const g = await raw(gw.url, { path: '/headers', headers: { 'e2b-sandbox-id': id, 'e2b-sandbox-port': '8000' } });
    assert.equal(g.status, 200, g.text);
    const seen = Object.keys(JSON.parse(g.text)).map((k) => k.toLowerCase());
    assert.ok(!seen.includes('e2b-sandbox-id') && !seen.includes('e2b-sandbox-port'), 'routing headers stay at the gateway');
  });

  test('the gateway key never reaches the sandbox; other Authorization headers do', async () => {
    const g = await raw(gw.url, { path: '/headers', headers: { host, authorization: `Bearer ${gw.key}`, 'x-api-key': gw.key } });
    assert.ok(!g.text.includes(gw.key), g.text);
    const own = await raw(gw.url, { path: '/headers', headers: { host, authorization: 'Bearer app-token' } });
    assert.match(own.text, /app-token/);
  });

  test('a closed port is E2B\'s 502; an unknown sandbox too', async () => {
    const r = await raw(gw.url, { path: '/', headers: { host: `8001-${id}.localhost` } });
    assert.equal(r.status, 502);
    assert.deepEqual(JSON.parse(r.text), { sandboxId: id, message: 'The sandbox is running but port is not open', port: 8001, code: 502 });
    const u = await raw(gw.url, { path: '/', headers: { host: '8000-zzzzzzzzzz.localhost' } });
    assert.equal(u.status, 502);
    assert.equal(JSON.parse(u.text).message, 'The sandbox was not found');
  });

  test('an upgrade is piped both ways', async () => {
    const u = new URL(gw.url);
    const socket = await new Promise<Socket>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: '/', headers: { host, connection: 'upgrade', upgrade: 'echo' } });
      req.on('upgrade', (_res, s) => resolve(s));
      req.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      req.on('error', reject);
      req.end();
    });
    socket.write('ping-pong');
    const got = await new Promise<string>((resolve) => socket.once('data', (d) => resolve(d.toString())));
    assert.equal(got, 'ping-pong');
    socket.destroy();
  });

  test('a client that goes away aborts the upstream request', async () => {
    const u = new URL(gw.url);
    await new Promise<void>((resolve, reject) => {
      const req = request({ host: u.hostname, port: u.port, path: '/stream', headers: { host } }, (res) => {
        res.once('data', () => {
          req.destroy();
          resolve();
        });
      });
      req.on('error', () => undefined);
      req.end();
      setTimeout(() => reject(new Error('no stream data')), 20_000).unref();
    });
    let seen = '';
    for (let i = 0; i < 100 && seen !== 'yes'; i++) {
      await new Promise((r) => setTimeout(r, 100));
      seen = (await gw.api('POST', `/sandboxes/${id}/exec`, { cmd: 'cat /tmp/aborted 2>/dev/null || true' })).body.stdout;
    }
    assert.equal(seen, 'yes', 'the server inside saw its client go away');
  });

  test("E2B's getHost(port) names the sandbox's port under --domain, and it answers through the gateway", async () => {
    const opts = { apiKey: gw.key, apiUrl: gw.url, sandboxUrl: gw.url };
    const sbx = await Sandbox.create('base', opts);
    try {
      const name = sbx.getHost(8000);
      assert.equal(name, `8000-${sbx.sandboxId}.localhost`);
      await sbx.commands.run('python3 -m http.server 8000 --directory /etc >/dev/null 2>&1', { background: true });
      let r = { status: 0, text: '' };
      for (let i = 0; i < 200 && r.status !== 200; i++) {
        r = await raw(gw.url, { path: '/hostname', headers: { host: `${name}:${new URL(gw.url).port}` } });
        if (r.status !== 200) await new Promise((res) => setTimeout(res, 50));
      }
      assert.equal(r.status, 200, r.text);
      assert.equal(r.text, 'coppice\n');
    } finally {
      await sbx.kill();
    }
  });

  test("coppice's own SDK: getHost(port) under the gateway's domain reaches the port; without a domain it says so", async () => {
    const sbx = await CoppiceSandbox.create('base', { url: gw.url, apiKey: gw.key, domain: 'localhost' });
    try {
      const name = sbx.getHost(8000);
      assert.equal(name, `8000-${sbx.sandboxID}.localhost`);
      await sbx.commands.run('nohup python3 -m http.server 8000 --directory /etc >/dev/null 2>&1 &');
      let r = { status: 0, text: '' };
      for (let i = 0; i < 200 && r.status !== 200; i++) {
        r = await raw(gw.url, { path: '/hostname', headers: { host: `${name}:${new URL(gw.url).port}` } });
        if (r.status !== 200) await new Promise((res) => setTimeout(res, 50));
      }
      assert.equal(r.text, 'coppice\n');
      const saved = process.env.COPPICE_DOMAIN;
      delete process.env.COPPICE_DOMAIN;
      try {
        const plain = await CoppiceSandbox.get(sbx.sandboxID, { url: gw.url, apiKey: gw.key });
        assert.throws(() => plain.getHost(8000), (e: unknown) => (e as { field?: string }).field === 'domain');
      } finally {
        if (saved !== undefined) process.env.COPPICE_DOMAIN = saved;
      }
      assert.throws(() => sbx.getHost(0), (e: unknown) => (e as { field?: string }).field === 'port');
    } finally {
      await sbx.kill();
    }
  });
});

