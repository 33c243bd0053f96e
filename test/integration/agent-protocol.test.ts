// The agent protocol end to end: the REAL coppice-agent (built from agent/ into a temp dir) started by
// this test on a unix socket in a temp dir, the way the jail driver will start it (`--bind` makes the
// listening socket fd 3, then execs the serving agent), and the TypeScript client. No runc: the
// agent serves the host here, so this needs no host lock. Commands run as the test's own user.
import assert from 'node:assert/strict';
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { connect as netConnect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { AgentClient, AgentError, FrameDecoder, encodeHeader, protocol, type AgentProcess, type Frame } from '../../src/backends/jail/linux/agent/index.ts';

const T = protocol.T;
const repo = join(import.meta.dirname, '..', '..');
const work = mkdtempSync(join(tmpdir(), 'coppice-agent-proto-'));
// COPPICE_TEST_AGENT: run against another build; no RSS checks then. The hostile-client and
// termination tests also run against an ASan/UBSan build (`make asan`): a memory error aborts it.
const given = process.env.COPPICE_TEST_AGENT;
const binary = given ?? join(work, 'coppice-agent');
const asanBinary = join(work, 'coppice-agent-asan');
const me = { uid: process.getuid?.() ?? 0, gid: process.getgid?.() ?? 0 };

interface RunningAgent {
  child: ChildProcess;
  pid: number;
  sock: string;
}
const agents: RunningAgent[] = [];
const strays = new Set<number>(); // pids of commands a test leaves running on purpose

async function startAgent(name: string, bin = binary): Promise<RunningAgent> {
  const sock = join(work, `${name}.sock`);
  // --bind listens on sock as fd 3 and execs the second argv: the serving agent, pid unchanged
  const child = spawn(bin, ['--bind', sock, '--', bin], { stdio: ['ignore', 'inherit', 'inherit'] });
  const a = { child, pid: child.pid!, sock };
  agents.push(a);
  while (!existsSync(sock)) await sleep(5);
  return a;
}

async function connect(a: RunningAgent): Promise<AgentClient> {
  for (;;) {
    try {
      return await AgentClient.connect(a.sock);
    } catch (err) {
      if ((err as AgentError).message.includes('ECONNREFUSED')) await sleep(5); // bound, not yet listening
      else throw err;
    }
  }
}

async function collect(p: AgentProcess): Promise<{ out: string; err: string; exit: Awaited<AgentProcess['exited']> }> {
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  p.stdout.on('data', (c: Buffer) => out.push(c));
  p.stderr.on('data', (c: Buffer) => err.push(c));
  const exit = await p.exited;
  return { out: Buffer.concat(out).toString(), err: Buffer.concat(err).toString(), exit };
}

const sh = (script: string, extra: Partial<Parameters<AgentClient['exec']>[0]> = {}) => ({
  argv: ['sh', '-c', script],
  env: ['PATH=/usr/local/bin:/usr/bin:/bin'],
  cwd: work,
  cred: me,
  ...extra,
});

function rssKb(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'no VmRSS line');
  return Number(m[1]);
}

/** Children of pid (from /proc), for "the command's own children got the signal too". */
function childrenOf(pid: number): number[] {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').trim().split(/\s+/).filter(Boolean).map(Number);
  } catch {
    return [];
  }
}

/** The pid of pid's child running `comm`, once it runs it (past fork, past exec: signals now hit it). */
async function childRunning(pid: number, comm: string): Promise<number> {
  for (;;) {
    for (const k of childrenOf(pid)) {
      try {
        if (readFileSync(`/proc/${k}/comm`, 'utf8').trim() === comm) return k;
      } catch {
        /* gone already */
      }
    }
    await sleep(5);
  }
}

const alive = (pid: number) => {
  try {
    process.kill(pid, 0);
    return !readFileSync(`/proc/${pid}/stat`, 'utf8').includes(') Z ');
  } catch {
    return false;
  }
};

before(async () => {
  const make = (...a: string[]) => promisify(execFile)('make', ['-s', '-C', join(repo, 'agent'), ...a]);
  if (!given) await make(`OUT=${binary}`, binary);
  await make(`ASAN_OUT=${asanBinary}`, asanBinary);
});

after(() => {
  for (const pid of strays) if (alive(pid)) process.kill(pid, 'SIGKILL');
  for (const a of agents) if (a.child.exitCode === null && a.child.signalCode === null) a.child.kill('SIGKILL');
  rmSync(work, { recursive: true, force: true });
});

describe('frame codec (client side)', () => {
  test('frames split at every byte boundary come out whole and in order', () => {
    const stream = Buffer.concat([
      encodeHeader(T.STDOUT, 7, 3),
      Buffer.from('abc'),
      encodeHeader(T.EXIT, 7, 8),
      Buffer.alloc(8),
      encodeHeader(T.OK, 0xffffffff, 0),
    ]);
    for (let step = 1; step <= stream.length; step++) {
      const d = new FrameDecoder();
      const got: Frame[] = [];
      for (let off = 0; off < stream.length; off += step) got.push(...d.push(stream.subarray(off, off + step)));
      assert.deepEqual(
        got.map((f) => [f.type, f.id, f.payload.toString('hex')]),
        [[T.STDOUT, 7, '616263'], [T.EXIT, 7, '0000000000000000'], [T.OK, 0xffffffff, '']],
        `step ${step}`,
      );
    }
  });

  test('a frame over the limit or with reserved bytes set is a protocol error', () => {
    const big = encodeHeader(T.STDOUT, 1, 0);
    big.writeUInt32LE(protocol.MAX_PAYLOAD + 1, 0);
    assert.throws(() => new FrameDecoder().push(big), /limit/);
    const reserved = encodeHeader(T.STDOUT, 1, 0);
    reserved[6] = 1;
    assert.throws(() => new FrameDecoder().push(reserved), /reserved/);
    assert.throws(() => encodeHeader(T.STDIN, 1, protocol.MAX_PAYLOAD + 1), RangeError);
  });
});

describe('coppice-agent protocol', () => {
  let agent: RunningAgent;
  let client: AgentClient;
  let idleRss = 0;

  before(async () => {
    agent = await startAgent('main');
    client = await connect(agent);
    idleRss = rssKb(agent.pid);
  });

  test('HELLO names the version and the agent pid', () => {
    assert.equal(client.hello.version, protocol.AGENT_VERSION);
    assert.equal(client.hello.pid, agent.pid);
  });

  test('exec true: started with a pid, exit 0, no output', async () => {
    const p = client.exec({ argv: ['true'], cred: me });
    const pid = await p.started;
    assert.ok(pid > 1);
    const r = await collect(p);
    assert.deepEqual(r.exit, { exitCode: 0, signal: null });
    assert.equal(r.out + r.err, '');
  });

  test('exit codes, death by signal, command not found, bad cwd', async () => {
    assert.deepEqual((await collect(client.exec(sh('exit 3')))).exit, { exitCode: 3, signal: null });
    assert.deepEqual((await collect(client.exec(sh('kill -TERM $$')))).exit, { exitCode: null, signal: 'SIGTERM' });
    const nf = await collect(client.exec({ argv: ['no-such-command-here'], env: ['PATH=/bin'], cred: me }));
    assert.equal(nf.exit.exitCode, 127);
    assert.match(nf.err, /command not found/);
    const cwd = await collect(client.exec({ argv: ['true'], cwd: join(work, 'missing'), cred: me }));
    assert.equal(cwd.exit.exitCode, 126);
    assert.match(cwd.err, /chdir/);
  });

  test('stdout and stderr stay separate; argv reaches the command unquoted', async () => {
    const r = await collect(client.exec(sh('printf "%s|" "$@"; echo err-line >&2', { argv: ['sh', '-c', 'printf "%s|" "$@"; echo err-line >&2', 'x', 'a b', "'q'", '$HOME'] })));
    assert.equal(r.out, "a b|'q'|$HOME|");
    assert.equal(r.err, 'err-line\n');
    assert.equal(r.exit.exitCode, 0);
  });

  test('stdin reaches the command; closing it gives EOF', async () => {
    const p = client.exec({ argv: ['sh', '-c', 'wc -c; cat >/dev/null'], cred: me });
    const big = randomBytes(3 << 20); // several stdin windows: exercises the acknowledgements
    p.stdin.end(big);
    const r = await collect(p);
    assert.equal(r.out.trim(), String(big.length));
    assert.equal(r.exit.exitCode, 0);
  });

  test('a large output and a slow reader: the agent stops at its window, nothing is lost', async () => {
    const lines = 400_000; // ~2.7 MB of `seq`
    const p = client.exec({ argv: ['seq', '1', String(lines)], env: ['PATH=/usr/bin:/bin'], cred: me });
    await p.started;
    // not reading: what reaches us is bounded by the window (plus what the stream itself buffers)
    let settled = false;
    p.exited.then(() => (settled = true), () => (settled = true));
    let last = -1;
    while (p.stdout.readableLength !== last) {
      last = p.stdout.readableLength;
      await sleep(50);
    }
    assert.ok(p.stdout.readableLength <= 2 * protocol.WINDOW, `buffered ${p.stdout.readableLength} bytes while nobody read`);
    assert.equal(settled, false, 'the command finished although its output was not read');
    // now a slow reader
    const got: Buffer[] = [];
    let n = 0;
    for await (const c of p.stdout) {
      got.push(c as Buffer);
      if (++n % 8 === 0) await sleep(1);
    }
    const expected = Array.from({ length: lines }, (_, i) => `${i + 1}\n`).join('');
    const text = Buffer.concat(got).toString();
    assert.equal(text.length, expected.length);
    assert.ok(text === expected, 'output differs from seq 1..N');
    assert.deepEqual(await p.exited, { exitCode: 0, signal: null });
  });

  test("SIGINT reaches the whole process group: sh -c 'sleep 20; echo after' stops, no 'after'", { timeout: 10_000 }, async () => {
    const p = client.exec(sh('sleep 20; echo after'));
    const pid = await p.started;
    const sleeper = await childRunning(pid, 'sleep');
    p.kill('SIGINT');
    const r = await collect(p);
    assert.deepEqual(r.exit, { exitCode: null, signal: 'SIGINT' });
    assert.equal(r.out, '');
    // the sleep got it too (same group): it is not left running for 20 s
    while (alive(sleeper)) await sleep(5);
  });

  test('a second SIGINT is a SIGINT again, never an escalation', async () => {
    // a shell that counts interrupts and exits on the third
    const p = client.exec(sh('n=0; trap \'n=$((n+1)); echo int$n; [ $n -ge 2 ] && exit 7\' INT; echo ready; while :; do sleep 0.05; done'));
    const out: string[] = [];
    let ready!: () => void;
    const isReady = new Promise<void>((r) => (ready = r));
    p.stdout.on('data', (c: Buffer) => {
      out.push(c.toString());
      if (out.join('').includes('ready')) ready();
    });
    await isReady;
    p.kill('SIGINT');
    while (!out.join('').includes('int1')) await sleep(5);
    p.kill('SIGINT');
    assert.deepEqual(await p.exited, { exitCode: 7, signal: null });
    assert.match(out.join(''), /int1\s+int2/);
  });

  test('a pty session: a real tty, TERM, size, resize, one stream', async () => {
    const p = client.exec(sh('tty; echo "term=$TERM"; stty size; read line; stty size; echo "line=$line"', { pty: { cols: 100, rows: 30 } }));
    let text = '';
    p.stdout.on('data', (c: Buffer) => (text += c.toString()));
    while (!text.includes('30 100')) await sleep(5);
    p.resize(120, 40);
    p.stdin.write('hello\n');
    const exit = await p.exited;
    assert.deepEqual(exit, { exitCode: 0, signal: null });
    assert.match(text, /^\/dev\/pts\/\d+\r?$/m);
    assert.match(text, /term=xterm-256color/);
    assert.match(text, /^40 120\r?$/m);
    assert.match(text, /line=hello/);
    assert.equal(p.stderr.readableEnded || p.stderr.readableLength === 0, true);
  });

  test('pty: closing stdin sends EOF (cat ends), a signal goes to the foreground group', async () => {
    const cat = client.exec({ argv: ['cat'], cred: me, pty: { cols: 80, rows: 24 } });
    await cat.started;
    cat.stdin.end('abc\n');
    const r = await collect(cat);
    assert.deepEqual({ exit: r.exit, out: r.out }, { exit: { exitCode: 0, signal: null }, out: 'abc\r\nabc\r\n' });
    assert.match(r.out, /abc/);
    const shell = client.exec(sh('sleep 30; echo after', { pty: { cols: 80, rows: 24 } }));
    const pid = await shell.started;
    await childRunning(pid, 'sleep');
    shell.kill('SIGINT');
    const s = await collect(shell);
    assert.equal(s.exit.signal, 'SIGINT');
    assert.doesNotMatch(s.out, /after/);
  });

  test('files: write, read, stat, list, mkdir -p, rename, remove round trip', async () => {
    const dir = join(work, 'files', 'a', 'b');
    assert.deepEqual(await client.mkdir(dir, { cred: me }), { created: true });
    assert.deepEqual(await client.mkdir(dir, { cred: me }), { created: false });
    const body = randomBytes((2 << 20) + 12345);
    const entry = await client.writeFile(join(dir, 'blob'), body, { cred: me, mode: 0o640 });
    assert.equal(entry.kind, 'file');
    assert.equal(entry.size, body.length);
    assert.equal(entry.mode, 0o640);
    assert.ok((await client.readFileBuffer(join(dir, 'blob'), me)).equals(body));
    // atomic replace: a second write leaves no temp file behind
    await client.writeFile(join(dir, 'blob'), 'small', { cred: me });
    assert.equal((await client.readFileBuffer(join(dir, 'blob'), me)).toString(), 'small');
    const st = await client.stat(join(dir, 'blob'), { cred: me });
    assert.equal(st.size, 5);
    assert.equal(st.mode, 0o640, 'a replace keeps the mode');
    const names = (await client.list(join(work, 'files'), { cred: me, depth: 3 })).map((e) => e.path.slice(work.length));
    assert.deepEqual(names.sort(), ['/files/a', '/files/a/b', '/files/a/b/blob']);
    await client.rename(join(dir, 'blob'), join(dir, 'moved'), { cred: me });
    await assert.rejects(client.stat(join(dir, 'blob'), { cred: me }), (e: AgentError) => e.code === 'not_found' && e.errno === 'ENOENT');
    await client.remove(join(work, 'files'), { cred: me });
    assert.equal(existsSync(join(work, 'files')), false);
    await assert.rejects(client.readFileBuffer(join(work, 'nope'), me), (e: AgentError) => e.errno === 'ENOENT');
    await assert.rejects(client.list(join(work, 'nope'), { cred: me }), (e: AgentError) => e.errno === 'ENOENT');
    await assert.rejects(client.list(work, { cred: me, depth: 65 }), (e: AgentError) => e.errno === 'EINVAL');
    // a FIFO would block the agent's one thread: only regular files are read
    await promisify(execFile)('mkfifo', [join(work, 'fifo')]);
    await assert.rejects(client.readFileBuffer(join(work, 'fifo'), me), (e: AgentError) => e.errno === 'EINVAL');
    await assert.rejects(client.readFileBuffer(work, me), (e: AgentError) => e.errno === 'EISDIR');
  });

  test('files: a symlink is followed by read and stat, listed as a link', async () => {
    const dir = join(work, 'links');
    mkdirSync(dir);
    writeFileSync(join(dir, 'real'), 'target-bytes');
    await client.writeFile(join(dir, 'real'), 'via agent', { cred: me });
    const { symlinkSync } = await import('node:fs');
    symlinkSync('real', join(dir, 'link'));
    assert.equal((await client.readFileBuffer(join(dir, 'link'), me)).toString(), 'via agent');
    const l = await client.stat(join(dir, 'link'), { cred: me });
    assert.equal(l.kind, 'symlink');
    assert.equal(l.target, 'real');
    assert.equal((await client.stat(join(dir, 'link'), { cred: me, follow: true })).kind, 'file');
    // writing through the link replaces the target, the link stays a link
    await client.writeFile(join(dir, 'link'), 'through', { cred: me });
    assert.equal(readFileSync(join(dir, 'real'), 'utf8'), 'through');
    assert.equal((await client.stat(join(dir, 'link'), { cred: me })).kind, 'symlink');
  });

  test('files as another user: permissions are checked as that user', { skip: me.uid !== 0 ? 'needs root to switch users' : false }, async () => {
    const dir = join(work, 'rootonly');
    mkdirSync(dir, { mode: 0o755 });
    const nobody = { uid: 65534, gid: 65534 };
    await assert.rejects(client.writeFile(join(dir, 'x'), 'no', { cred: nobody }), (e: AgentError) => e.errno === 'EACCES');
    writeFileSync(join(dir, 'secret'), 's', { mode: 0o600 });
    await assert.rejects(client.readFileBuffer(join(dir, 'secret'), nobody), (e: AgentError) => e.errno === 'EACCES');
    const who = await collect(client.exec({ argv: ['id', '-u'], env: ['PATH=/usr/bin:/bin'], cred: nobody }));
    assert.equal(who.out.trim(), '65534');
  });

  test('watch: create, write, remove and rename events', async () => {
    const dir = join(work, 'watched');
    mkdirSync(dir);
    const w = await client.watch(dir, { cred: me });
    const seen: string[] = [];
    w.on('event', (e) => seen.push(`${e.kind}:${e.name}`));
    const until = async (s: string) => {
      while (!seen.includes(s)) await sleep(5);
    };
    writeFileSync(join(dir, 'f'), 'x');
    await until('create:f');
    await until('write:f');
    const { renameSync, unlinkSync } = await import('node:fs');
    renameSync(join(dir, 'f'), join(dir, 'g'));
    await until('rename:f');
    await until('create:g');
    unlinkSync(join(dir, 'g'));
    await until('remove:g');
    w.close();
    await client.ping(); // the CANCEL was answered and the connection is fine
  });

  test('files: a failed source and a cancelled read leave nothing behind', async () => {
    const dir = join(work, 'cancel');
    mkdirSync(dir);
    async function* failing() {
      yield Buffer.alloc(100_000, 1);
      throw new Error('source broke');
    }
    await assert.rejects(client.writeFile(join(dir, 'half'), failing(), { cred: me }), /source broke/);
    await client.ping(); // the CANCEL has been handled by now (frames are processed in order)
    assert.deepEqual(await client.list(dir, { cred: me }), [], 'a temporary file was left');
    writeFileSync(join(dir, 'big'), randomBytes(4 << 20));
    const r = client.readFile(join(dir, 'big'), me);
    await new Promise<void>((resolve) => r.once('data', () => resolve()));
    r.destroy();
    await client.ping();
    assert.equal((await client.readFileBuffer(join(dir, 'big'), me)).length, 4 << 20);
  });

  test('files: mkdir through a file, remove of a link to a directory', async () => {
    const dir = join(work, 'edge');
    mkdirSync(join(dir, 'real'), { recursive: true });
    writeFileSync(join(dir, 'file'), '');
    await assert.rejects(client.mkdir(join(dir, 'file', 'sub'), { cred: me }), (e: AgentError) => e.errno === 'ENOTDIR');
    writeFileSync(join(dir, 'real', 'keep'), 'k');
    const { symlinkSync } = await import('node:fs');
    symlinkSync(join(dir, 'real'), join(dir, 'link'));
    await client.remove(join(dir, 'link'), { cred: me });
    assert.equal(readFileSync(join(dir, 'real', 'keep'), 'utf8'), 'k', 'remove followed the link');
    assert.equal(existsSync(join(dir, 'link')), false);
  });

  test('watch, recursive: a new subdirectory is watched as it appears', async () => {
    const dir = join(work, 'rwatch');
    mkdirSync(join(dir, 'old'), { recursive: true });
    const w = await client.watch(dir, { cred: me, recursive: true });
    const seen: string[] = [];
    w.on('event', (e) => seen.push(`${e.kind}:${e.name}`));
    const until = async (x: string) => {
      while (!seen.includes(x)) await sleep(5);
    };
    writeFileSync(join(dir, 'old', 'a'), 'a');
    await until('create:old/a');
    mkdirSync(join(dir, 'new'));
    await until('create:new'); // the agent watches a new directory before it reports it
    writeFileSync(join(dir, 'new', 'b'), 'b');
    await until('create:new/b');
    w.close();
  });

  test('stats: the cgroup counters the agent sees at /sys/fs/cgroup (v2, or v1 controllers)', async (t) => {
    const read = (f: string) => (existsSync(f) ? readFileSync(f, 'utf8') : '');
    const v2 = /^usage_usec (\d+)$/m.exec(read('/sys/fs/cgroup/cpu.stat'));
    const v1 = /^(\d+)/.exec(read('/sys/fs/cgroup/cpuacct/cpuacct.usage'));
    const cpuBefore = v2 ? BigInt(v2[1]) : v1 ? BigInt(v1[1]) / 1000n : null;
    const s = await client.stats();
    if (cpuBefore === null) return t.skip('no cgroup cpu accounting here');
    assert.ok(s.cpuUsec >= cpuBefore, `cpu ${s.cpuUsec} < ${cpuBefore} read just before`);
    assert.ok(s.userUsec > 0n && s.systemUsec > 0n);
    if (!v2) assert.ok(s.memCurrent > 0n, 'memory.usage_in_bytes');
  });

  test('bad input is refused before anything is sent', () => {
    assert.throws(() => client.exec({ argv: [] }), /argv/);
    assert.throws(() => client.exec({ argv: ['a\0b'] }), /NUL/);
    assert.throws(() => client.exec({ argv: ['true'], cwd: 'relative' }), /cwd/);
    assert.throws(() => client.exec({ argv: ['true'], pty: { cols: 0, rows: 10 } }), /cols/);
  });

  test(`agent RSS stays under 1 MiB after all of the above`, { skip: given ? 'not the static build' : false }, async () => {
    // the agent gives the buffers a burst grew back once idle for 100 ms: wait for that, boundedly
    let rss = rssKb(agent.pid);
    for (let i = 0; i < 40 && rss >= 1024; i++) {
      await sleep(50);
      rss = rssKb(agent.pid);
    }
    console.log(`# coppice-agent VmRSS: ${idleRss} kB idle, ${rss} kB after the workload`);
    assert.ok(idleRss < 1024, `idle RSS ${idleRss} kB`);
    assert.ok(rss < 1024, `RSS ${rss} kB`);
  });
});

/** A raw connection for frames the client would never send. */
class Raw {
  private readonly decoder = new FrameDecoder();
  private frames: Frame[] = [];
  private waiters: Array<() => void> = [];
  closed = false;
  constructor(readonly s: Socket) {
    s.on('data', (c: Buffer) => {
      this.frames.push(...this.decoder.push(c));
      this.waiters.splice(0).forEach((w) => w());
    });
    s.on('close', () => ((this.closed = true), this.waiters.splice(0).forEach((w) => w())));
    s.on('error', () => undefined);
  }
  static open(path: string): Promise<Raw> {
    return new Promise((resolve, reject) => {
      const s = netConnect(path, () => resolve(new Raw(s)));
      s.once('error', reject);
    });
  }
  send(type: number, id: number, payload = Buffer.alloc(0)): void {
    this.s.write(Buffer.concat([encodeHeader(type, id, payload.length), payload]));
  }
  async next(): Promise<Frame | null> {
    while (!this.frames.length && !this.closed) await new Promise<void>((r) => this.waiters.push(r));
    return this.frames.shift() ?? null;
  }
  async untilClosed(): Promise<void> {
    while (!this.closed) await new Promise<void>((r) => this.waiters.push(r));
  }
}

for (const build of ['static', 'asan'] as const) {
const bin = () => (build === 'asan' ? asanBinary : binary);

describe(`coppice-agent termination (${build} build)`, () => {
  test('SIGTERM: passed on to the commands, their exits reported, then the agent exits 0', { timeout: 10_000 }, async () => {
    const agent = await startAgent(`term-${build}`, bin());
    const c = await connect(agent);
    const p = c.exec(sh('sleep 30 & wait'));
    const sleeper = await childRunning(await p.started, 'sleep');
    const gone = new Promise<number | null>((resolve) => agent.child.once('exit', (code) => resolve(code)));
    process.kill(agent.pid, 'SIGTERM');
    assert.deepEqual(await p.exited, { exitCode: null, signal: 'SIGTERM' });
    // 0 also says a sanitizer build found no leak at exit
    assert.equal(await gone, 0);
    // the background sleep got the SIGTERM too (it is not the agent's child: it may die a moment later)
    while (alive(sleeper)) await sleep(5);
  });
});

describe(`coppice-agent against a hostile or changing client (${build} build)`, () => {
  let agent: RunningAgent;
  before(async () => {
    agent = await startAgent(`hostile-${build}`, bin());
    await (await connect(agent)).close();
  });

  test('malformed payloads get an ERROR and the connection stays; broken framing drops it; the agent lives', async () => {
    const r = await Raw.open(agent.sock);
    assert.equal((await r.next())?.type, T.HELLO);
    r.send(T.START, 1, Buffer.from('garbage'));
    let f = await r.next();
    assert.equal(f?.type, T.ERROR);
    assert.equal(f?.payload.readUInt32LE(0), 22); // EINVAL
    r.send(0x7e, 2);
    f = await r.next();
    assert.equal(f?.type, T.ERROR);
    r.send(T.STAT, 3, Buffer.from([1, 2, 3]));
    assert.equal((await r.next())?.type, T.ERROR);
    r.send(T.PING, 4);
    assert.equal((await r.next())?.type, T.OK);
    // a length over the limit: one ERROR, then the agent hangs up
    const h = encodeHeader(T.STDIN, 5, 0);
    h.writeUInt32LE(protocol.MAX_PAYLOAD + 1, 0);
    r.s.write(h);
    f = await r.next();
    assert.equal(f?.type, T.ERROR);
    assert.equal(f?.id, 5);
    await r.untilClosed();

    // text that is not our framing at all
    const t = await Raw.open(agent.sock);
    assert.equal((await t.next())?.type, T.HELLO);
    t.s.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    while ((await t.next()) !== null);
    assert.ok(t.closed);

    // random frames of the control kinds (never START or file requests: those act on this host)
    const kinds = [T.STDIN, T.STDIN_CLOSE, T.RESIZE, T.SIGNAL, T.CREDIT, T.CANCEL, T.PING, T.STATS, T.ATTACH, T.PROCS, 0x00, 0x7f, 0xff];
    const z = await Raw.open(agent.sock);
    assert.equal((await z.next())?.type, T.HELLO);
    for (let i = 0; i < 2000; i++) {
      const len = [0, 1, 3, 4, 8, 17][i % 6];
      z.send(kinds[i % kinds.length], 0x40000000 + i, randomBytes(len));
    }
    z.send(T.PING, 7);
    for (let f2 = await z.next(); f2 && !(f2.type === T.OK && f2.id === 7); f2 = await z.next());
    assert.equal(z.closed, false);
    z.s.destroy();

    assert.ok(alive(agent.pid), 'the agent died');
    const c = await connect(agent);
    assert.deepEqual((await collect(c.exec({ argv: ['true'], cred: me }))).exit, { exitCode: 0, signal: null });
    c.close();
  });

  test('reconnect: the newest connection replaces the old one; running commands survive and can be attached', async () => {
    const a = await connect(agent);
    const waiting = a.exec(sh('read x; echo "got $x"'));
    const waitingPid = await waiting.started;
    strays.add(waitingPid);
    const doomed = a.exec(sh('sleep 30'));
    const doomedPid = await doomed.started;
    strays.add(doomedPid);

    const b = await connect(agent);
    await a.whenClosed(); // replaced
    await assert.rejects(waiting.exited, (e: AgentError) => /connection lost/.test(e.message));
    assert.ok(alive(waitingPid) && alive(doomedPid), 'commands of the old connection were killed');

    const list = await b.processes();
    const mine = list.find((p) => p.id === waiting.id);
    assert.ok(mine, `process ${waiting.id} not listed: ${JSON.stringify(list)}`);
    assert.deepEqual({ pid: mine.pid, detached: mine.detached, exited: mine.exited }, { pid: waitingPid, detached: true, exited: false });

    const again = await b.attach(waiting.id, false);
    assert.equal(await again.started, waitingPid);
    again.stdin.write('hi\n');
    const r = await collect(again);
    assert.equal(r.out, 'got hi\n');
    assert.equal(r.exit.exitCode, 0);

    // one that ends while nobody is attached reports its exit at the attach
    process.kill(-doomedPid, 'SIGTERM'); // its group: sh and its sleep (which holds the output open)
    while (!(await b.processes()).find((p) => p.id === doomed.id)?.exited) await sleep(5);
    const late = await b.attach(doomed.id, false);
    assert.deepEqual((await collect(late)).exit, { exitCode: null, signal: 'SIGTERM' });
    await assert.rejects(b.attach(doomed.id, false), (e: AgentError) => e.errno === 'ESRCH');
    b.close();
  });

  test('after a client dies mid-stream, a new one gets a working agent', async () => {
    const a = await connect(agent);
    const p = a.exec({ argv: ['seq', '1', '10000000'], env: ['PATH=/usr/bin:/bin'], cred: me });
    strays.add(await p.started);
    a.close(); // output in flight, window half used
    const b = await connect(agent);
    const list = await b.processes();
    assert.ok(list.some((x) => x.id === p.id && x.detached));
    const killer = await b.attach(p.id, false);
    killer.kill('SIGKILL');
    killer.stdout.resume();
    assert.equal((await killer.exited).signal, 'SIGKILL');
    assert.deepEqual((await collect(b.exec({ argv: ['true'], cred: me }))).exit, { exitCode: 0, signal: null });
    if (!given && build === 'static') assert.ok(rssKb(agent.pid) < 1024);
    b.close();
  });
});
}
