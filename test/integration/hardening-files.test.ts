// E2B envd /files uploads are bounded and streamed (issue 13 item 6): with --body-limit 1 MiB a
// 50 MB raw body, a 100 MB multipart and a 194 KB gzip that inflates to 200 MB are all 413; with a
// limit that allows them, four concurrent 200 MB multipart uploads keep the gateway's RSS (read
// from /proc of the gateway child process) under 300 MB; file mistakes are 4xx, never 500.
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { existsSync, readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { after, describe, it } from 'node:test';
import { gzipSync } from 'node:zlib';
import { createLinuxJailBackend, findLeftovers } from '../../src/backends/jail/linux/index.ts';
import { startChildGateway, waitHealthy, type ChildGateway } from '../helpers/child-gateway.ts';
import { TEMPLATES_ROOT } from '../helpers/gateway.ts';
import { freeSubnet } from '../helpers/jail-app.ts';

const skip = process.getuid?.() !== 0 ? 'needs root' : !existsSync(join(TEMPLATES_ROOT, 'base-template')) ? 'no base template' : false;
const MB = 1024 * 1024;

const made: { c: ChildGateway; ids: string[] }[] = [];

async function gateway(bodyLimit: number) {
  const c = await startChildGateway(['--body-limit', String(bodyLimit), '--drain-timeout', '20', '--jail-subnet', freeSubnet()]);
  const entry = { c, ids: [] as string[] };
  made.push(entry);
  await waitHealthy(c.url);
  const r = await c.api('POST', '/sandboxes', { templateID: 'base' });
  assert.equal(r.status, 201, await r.clone().text());
  const id = ((await r.json()) as { sandboxID: string }).sandboxID;
  entry.ids.push(id);
  return { c, id };
}

const CHUNK = Buffer.alloc(MB);
for (let i = 0; i < MB; i++) CHUNK[i] = i % 251;

/** `size` bytes of a repeating 1 MiB pattern (never held whole). */
async function* pattern(size: number): AsyncGenerator<Uint8Array> {
  const chunk = CHUNK;
  for (let left = size; left > 0; left -= MB) yield left >= MB ? chunk : chunk.subarray(0, left);
}

function multipart(path: string, size: number, boundary = 'hardeningBoundary7'): AsyncGenerator<Uint8Array> {
  return (async function* () {
    yield Buffer.from(`--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${path}"\r\nContent-Type: application/octet-stream\r\n\r\n`);
    yield* pattern(size);
    yield Buffer.from(`\r\n--${boundary}--\r\n`);
  })();
}

const stream = (gen: AsyncGenerator<Uint8Array>) =>
  new ReadableStream<Uint8Array>({
    async pull(ctl) {
      const r = await gen.next();
      if (r.done) ctl.close();
      else ctl.enqueue(r.value);
    },
  });

async function upload(c: ChildGateway, id: string, opts: { path?: string; user?: string; body: BodyInit | AsyncGenerator<Uint8Array>; headers?: Record<string, string> }) {
  const q = new URLSearchParams({ username: opts.user ?? 'root', ...(opts.path ? { path: opts.path } : {}) });
  const body = typeof (opts.body as AsyncGenerator).next === 'function' ? stream(opts.body as AsyncGenerator<Uint8Array>) : (opts.body as BodyInit);
  const r = await fetch(`${c.url}/files?${q}`, {
    method: 'POST',
    headers: { 'e2b-sandbox-id': id, 'x-api-key': c.key, ...opts.headers },
    body,
    duplex: 'half',
  } as RequestInit);
  return { status: r.status, text: await r.text() };
}

async function sh(c: ChildGateway, id: string, cmd: string) {
  const r = await c.api('POST', `/sandboxes/${id}/exec`, { cmd, user: 'root' });
  return ((await r.json()) as { stdout: string }).stdout;
}

const rssKiB = (pid: number) => Number(/^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);

describe('/files uploads: bounded and streamed', { skip }, () => {
  after(async () => {
    for (const { c, ids } of made) {
      if (c.proc.exitCode === null && c.proc.signalCode === null) {
        c.proc.kill('SIGINT');
        await c.exit;
      }
      if ((await findLeftovers(ids, { stateDir: c.stateDir })).length > 0) {
        const b = await createLinuxJailBackend({ stateDir: c.stateDir });
        for (const id of ids) await b.destroy({ id, backend: 'jail', template: 'base', ip: '', data: {} });
        await b.close();
      }
      rmSync(c.stateDir, { recursive: true, force: true });
    }
  });

  it('--body-limit 1 MiB: raw, multipart and a gzip bomb are 413; small uploads and file mistakes behave', async () => {
    const { c, id } = await gateway(MB);
    // Declared too large: refused before a byte is read.
    const raw50 = Buffer.alloc(50 * MB, 1);
    assert.equal((await upload(c, id, { path: '/tmp/raw', body: raw50 })).status, 413);
    // Not declared (chunked): refused once the count passes the limit.
    assert.equal((await upload(c, id, { path: '/tmp/raw2', body: pattern(5 * MB) })).status, 413);
    assert.equal(
      (await upload(c, id, { body: multipart('/tmp/mp', 100 * MB), headers: { 'content-type': 'multipart/form-data; boundary=hardeningBoundary7' } })).status,
      413,
    );
    // 200 MB of zeros: about 200 KB of gzip, under the limit on the wire, 200x over it inflated.
    const bomb = gzipSync(Buffer.alloc(200 * MB), { level: 9 });
    assert.ok(bomb.length < MB, `bomb is ${bomb.length} bytes`);
    const b = await upload(c, id, { path: '/tmp/bomb', body: bomb, headers: { 'content-encoding': 'gzip' } });
    assert.equal(b.status, 413, b.text);
    assert.match(b.text, /body-limit/);
    const bombed = await sh(c, id, 'stat -c %s /tmp/bomb 2>/dev/null || echo none');
    assert.ok(bombed.trim() === 'none' || Number(bombed) <= MB, `bomb wrote ${bombed}`);

    // Within the limit: raw, gzip and multipart all land, byte for byte.
    const small = Buffer.from('hello from a small upload\n');
    assert.equal((await upload(c, id, { path: '/tmp/small', body: small })).status, 200);
    assert.equal((await upload(c, id, { path: '/tmp/small.gz', body: gzipSync(small), headers: { 'content-encoding': 'gzip' } })).status, 200);
    const fd = new FormData();
    fd.append('file', new Blob([small]), '/tmp/a/b/c.txt');
    fd.append('file', new Blob(['second']), '/tmp/second');
    const m = await upload(c, id, { body: fd });
    assert.equal(m.status, 200, m.text);
    assert.deepEqual((JSON.parse(m.text) as { path: string }[]).map((w) => w.path), ['/tmp/a/b/c.txt', '/tmp/second']);
    assert.equal(await sh(c, id, 'cat /tmp/small /tmp/small.gz /tmp/a/b/c.txt /tmp/second'), `${small}${small}${small}second`);

    // File mistakes are the client's: 4xx with a message, never 500.
    const mistakes: [string, { path: string; user?: string }, number][] = [
      ['path is a directory', { path: '/tmp' }, 400],
      ['parent is a file', { path: '/etc/passwd/x' }, 400],
      ['parent not writable for user', { path: '/root/nope/x', user: 'user' }, 403],
      ['file not writable for user', { path: '/etc/passwd', user: 'user' }, 403],
      ['file name too long', { path: `/tmp/${'n'.repeat(300)}` }, 400],
    ];
    for (const [what, where, status] of mistakes) {
      const r = await upload(c, id, { ...where, body: small });
      assert.equal(r.status, status, `${what}: ${r.text}`);
    }
    assert.equal((await upload(c, id, { path: '/tmp/x', body: Buffer.from('not gzip'), headers: { 'content-encoding': 'gzip' } })).status, 400);
    assert.equal((await upload(c, id, { body: 'no boundary', headers: { 'content-type': 'multipart/form-data' } })).status, 400);
  });

  it('four concurrent 200 MB multipart uploads keep the gateway under 300 MB RSS', async () => {
    const { c, id } = await gateway(256 * MB);
    const pid = c.proc.pid!;
    const base = rssKiB(pid);
    let peak = base;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        peak = Math.max(peak, rssKiB(pid));
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const size = 200 * MB;
    const results = await Promise.all(
      [0, 1, 2, 3].map((i) => upload(c, id, { body: multipart(`/tmp/big${i}`, size), headers: { 'content-type': 'multipart/form-data; boundary=hardeningBoundary7' } })),
    );
    sampling = false;
    await sampler;
    for (const r of results) assert.equal(r.status, 200, r.text);
    assert.equal(await sh(c, id, 'for i in 0 1 2 3; do stat -c %s /tmp/big$i; done'), `${size}\n`.repeat(4));
    // The pattern's bytes arrived intact (first and last MiB of one file).
    const md5 = createHash('md5').update(CHUNK).digest('hex');
    assert.equal(await sh(c, id, 'head -c 1048576 /tmp/big2 | md5sum; tail -c 1048576 /tmp/big2 | md5sum'), `${md5}  -\n`.repeat(2));
    process.stderr.write(`# gateway RSS: ${Math.round(base / 1024)} MB before, peak ${Math.round(peak / 1024)} MB during 4 x 200 MB uploads\n`);
    assert.ok(peak < 300 * 1024, `peak RSS ${Math.round(peak / 1024)} MB`);
  });
});
