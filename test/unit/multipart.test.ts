// The streaming multipart reader (src/e2b/multipart.ts) against bodies built by undici's FormData,
// fed in tiny and odd-sized chunks so every boundary straddles a chunk edge somewhere.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { boundaryOf, dispositionParams, parseMultipart } from '../../src/e2b/multipart.ts';

async function encode(fd: FormData): Promise<{ raw: Buffer; boundary: string }> {
  const req = new Request('http://x', { method: 'POST', body: fd });
  return { raw: Buffer.from(await req.arrayBuffer()), boundary: boundaryOf(req.headers.get('content-type')!)! };
}

async function* chunked(raw: Buffer, size: number) {
  for (let i = 0; i < raw.length; i += size) yield raw.subarray(i, i + size);
}

async function collect(raw: Buffer, boundary: string, size: number) {
  const out: { name: string; filename?: string; body: Buffer }[] = [];
  for await (const p of parseMultipart(chunked(raw, size), boundary)) {
    const bufs: Buffer[] = [];
    for await (const c of p.body) bufs.push(c);
    out.push({ name: p.name, filename: p.filename, body: Buffer.concat(bufs) });
  }
  return out;
}

describe('parseMultipart', () => {
  test('parts, names, filenames and bodies survive any chunking', async () => {
    const big = Buffer.alloc(200_000, 7);
    const tricky = Buffer.from('a\r\n--almost-a-boundary\r\n\r\n');
    const fd = new FormData();
    fd.append('file', new Blob([big]), '/home/user/a.bin');
    fd.append('note', 'text');
    fd.append('file', new Blob([tricky]), 'rel/b.txt');
    fd.append('file', new Blob([]), 'empty');
    const { raw, boundary } = await encode(fd);
    for (const size of [1, 7, 70, 4096, raw.length]) {
      const parts = await collect(raw, boundary, size);
      assert.deepEqual(parts.map((p) => [p.name, p.filename, p.body.length]), [
        ['file', '/home/user/a.bin', big.length],
        ['note', undefined, 4],
        ['file', 'rel/b.txt', tricky.length],
        ['file', 'empty', 0],
      ], `chunk size ${size}`);
      assert.ok(parts[0]!.body.equals(big));
      assert.ok(parts[2]!.body.equals(tricky));
    }
  });

  test('a part left unread is skipped', async () => {
    const fd = new FormData();
    fd.append('skip', new Blob([Buffer.alloc(10_000, 1)]), 'x');
    fd.append('file', new Blob(['kept']), 'y');
    const { raw, boundary } = await encode(fd);
    const seen: string[] = [];
    for await (const p of parseMultipart(chunked(raw, 333), boundary)) {
      if (p.name !== 'file') continue;
      let s = '';
      for await (const c of p.body) s += c.toString();
      seen.push(s);
    }
    assert.deepEqual(seen, ['kept']);
  });

  test('truncated or boundary-less bodies are invalid, not a crash', async () => {
    const fd = new FormData();
    fd.append('file', new Blob(['abc']), 'y');
    const { raw, boundary } = await encode(fd);
    await assert.rejects(collect(raw.subarray(0, raw.length - 10), boundary, 5), { name: 'FsError', kind: 'invalid' });
    await assert.rejects(collect(Buffer.from('no boundary here'), boundary, 5), { name: 'FsError', kind: 'invalid' });
  });

  test('Content-Type and Content-Disposition parameters', () => {
    assert.equal(boundaryOf('multipart/form-data; boundary="a b"'), 'a b');
    assert.equal(boundaryOf('multipart/form-data; charset=x; boundary=xyz'), 'xyz');
    assert.equal(boundaryOf('multipart/form-data'), null);
    assert.deepEqual(dispositionParams(`form-data; name="file"; filename="a \\"q\\".txt"`), { name: 'file', filename: 'a "q".txt' });
    assert.deepEqual(dispositionParams(`form-data; name=file; filename*=UTF-8''%C3%A9.txt`), { name: 'file', filename: 'é.txt' });
  });
});
