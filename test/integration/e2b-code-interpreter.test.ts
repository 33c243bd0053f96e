// The official `@e2b/code-interpreter` npm SDK, unchanged, against coppice's `code-interpreter`
// template (its default name code-interpreter-v1): runCode results, state between cells,
// matplotlib PNGs, errors, streamed stdout, contexts, and a cell that loops forever stopped when
// the client aborts. Real sandboxes; the SDK reaches port 49999 through E2b-Sandbox-Port.
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { Sandbox } from '@e2b/code-interpreter';
import { startTestGateway, type TestGateway } from '../helpers/gateway.ts';

describe('code interpreter through the official SDK (real sandbox)', () => {
  let gw: TestGateway;
  let sbx: Sandbox;
  before(async () => {
    gw = await startTestGateway();
    // No template named: the SDK's default, code-interpreter-v1.
    sbx = await Sandbox.create({ apiKey: gw.key, apiUrl: gw.url, sandboxUrl: gw.url });
  });
  after(async () => {
    await sbx?.kill().catch(() => false);
    await gw?.close();
  });

  test("runCode('1+1') returns 2", async () => {
    const r = await sbx.runCode('1+1');
    assert.equal(r.error, undefined);
    assert.equal(r.text, '2');
  });

  test('state persists between cells; stdout streams as it is printed', async () => {
    await sbx.runCode('x = 5');
    const lines: string[] = [];
    const r = await sbx.runCode('print("hello")\nx * 2', { onStdout: (m) => void lines.push(m.line) });
    assert.equal(r.text, '10');
    assert.deepEqual(r.logs.stdout, ['hello\n']);
    assert.deepEqual(lines, ['hello\n']);
  });

  test('an exception is the execution error (name, value, traceback)', async () => {
    const r = await sbx.runCode('1/0');
    assert.equal(r.error?.name, 'ZeroDivisionError');
    assert.equal(r.error?.value, 'division by zero');
    assert.match(r.error?.traceback ?? '', /ZeroDivisionError/);
  });

  test('a matplotlib figure comes back as a PNG result', async () => {
    const r = await sbx.runCode('import matplotlib.pyplot as plt\nplt.plot([1, 2, 3], [1, 4, 9])\nplt.title("squares")');
    const png = r.results.find((x) => x.png)?.png;
    assert.ok(png, JSON.stringify(r.results.map((x) => Object.keys(x))));
    assert.deepEqual([...Buffer.from(png, 'base64').subarray(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a]);
  });

  test('a context of its own has its own state', async () => {
    const ctx = await sbx.createCodeContext({ language: 'python' });
    await sbx.runCode('y = 1', { context: ctx });
    const other = await sbx.runCode('"y" in globals()');
    assert.equal(other.text, 'False');
    assert.equal((await sbx.runCode('y + 1', { context: ctx })).text, '2');
    await sbx.removeCodeContext(ctx);
  });

  test('a cell that loops forever stops when the client aborts; the context stays usable', async () => {
    await sbx.runCode('import time\nticks = 0');
    await assert.rejects(sbx.runCode('while True:\n    ticks += 1\n    time.sleep(0.01)', { timeoutMs: 1500 }));
    // Interrupted, not left running: ticks stops growing, and the next cell runs at once.
    const a = Number((await sbx.runCode('ticks')).text);
    await new Promise((r) => setTimeout(r, 300));
    const b = Number((await sbx.runCode('ticks')).text);
    assert.ok(a > 0, `the loop ran (${a})`);
    assert.equal(a, b, 'the loop is no longer running');
  });
});
