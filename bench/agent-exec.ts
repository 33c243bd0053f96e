// Exec round trip of `true` in ONE runc container whose PID 1 is coppice-agent: over the agent's
// socket (src/backends/jail/linux/agent/) against `runc exec <c> true` on the very same container,
// alternating, same machine load. Also: `python3 -c 'print(1)'` both ways, a 1 KB file write + read
// through the agent, and the agent's memory as PID 1 of the container.
//
//   flock /tmp/coppice-host.lock node --import tsx bench/agent-exec.ts [--n 100] [--template base]
//
// The container is started the way the jail driver will (docs/agent.md): `coppice-agent --bind
// <bundle>/agent.sock -- runc create --preserve-fds 1 ...` makes the listening socket fd 3 of the
// container's init, which is the agent (`--listen-fd 3`). Read-only template root, its own netns
// (loopback only), bench-only names (container `cpagent-<id>`, cgroup `/coppice-bench/agent-<id>`);
// everything is removed at the end, by name.
import { execFile, spawn } from 'node:child_process';
import { closeSync, existsSync, mkdtempSync, openSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseArgs, promisify } from 'node:util';
import { AgentClient } from '../src/backends/jail/linux/agent/index.ts';
import { buildConfig, nofile } from '../src/backends/jail/linux/oci-config.ts';
import { DEFAULT_LIMITS } from '../src/backends/types.ts';
import { newId } from './lib/host.ts';
import { removeCgroupParents } from './lib/raw-runc.ts';
import { fmt, median, p95 } from './lib/stats.ts';

const exec = promisify(execFile);
const { values: args } = parseArgs({
  options: { n: { type: 'string', default: '100' }, template: { type: 'string', default: 'base' }, 'templates-root': { type: 'string' } },
});
const N = Number(args.n);
const templatesRoot = args['templates-root'] ?? process.env.COPPICE_TEMPLATES_ROOT ?? '/var/lib/coppice/templates';
const rootfs = join(templatesRoot, `${args.template}-template`);
const AGENT_IN = '/dev/.coppice-agent'; // /dev is the container's own tmpfs: the mount point needs no writable root
const repo = join(import.meta.dirname, '..');

function spawnDone(cmd: string, argv: string[], stdio: 'ignore' | number = 'ignore'): Promise<number> {
  return new Promise((resolve, reject) => {
    const p = spawn(cmd, argv, { stdio: ['ignore', stdio, stdio] });
    p.on('error', reject);
    p.on('exit', (code) => resolve(code ?? 128));
  });
}

function hostHardNofile(): number {
  const hard = /^Max open files\s+\S+\s+(\S+)/m.exec(readFileSync('/proc/self/limits', 'utf8'))?.[1];
  return hard === undefined || hard === 'unlimited' ? Infinity : Number(hard) || 1024;
}

async function main(): Promise<void> {
  if (!existsSync(rootfs)) throw new Error(`no template at ${rootfs} (run ops/setup.sh)`);
  const bundle = mkdtempSync(join(tmpdir(), 'coppice-bench-agent-'));
  const id = newId();
  const container = `cpagent-${id}`;
  const sock = join(bundle, 'agent.sock');
  const agentBin = join(bundle, 'coppice-agent');
  let created = false;
  let client: AgentClient | undefined;
  const cleanup = async () => {
    client?.close();
    if (created) await exec('runc', ['delete', '--force', container]).catch((e) => console.error(`runc delete: ${e.message}`));
    await removeCgroupParents();
    rmSync(bundle, { recursive: true, force: true });
  };
  process.once('SIGINT', () => void cleanup().then(() => process.exit(130)));
  process.once('SIGTERM', () => void cleanup().then(() => process.exit(143)));
  try {
    // the agent as built from this checkout's agent/
    await exec('make', ['-s', '-C', join(repo, 'agent'), `OUT=${agentBin}`, agentBin]);
    const config = buildConfig({
      id: container,
      cgroupsPath: `/coppice-bench/agent-${id}`,
      limits: DEFAULT_LIMITS,
      hostInit: agentBin,
      hostBusybox: agentBin,
      rlimits: [nofile(hostHardNofile())],
    });
    config.root = { path: rootfs, readonly: true };
    config.process.args = [AGENT_IN, '--listen-fd', '3'];
    // the driver's tini and busybox mounts are not used here: the agent is the init
    config.mounts = config.mounts.filter((m) => !m.destination.startsWith('/.coppice/'));
    config.mounts.push({ destination: AGENT_IN, type: 'bind', source: agentBin, options: ['bind', 'ro', 'nosuid', 'nodev'] });
    writeFileSync(join(bundle, 'config.json'), JSON.stringify(config));
    const logFd = openSync(join(bundle, 'create.log'), 'w', 0o600);
    const pidFile = join(bundle, 'init.pid');
    const t0 = performance.now();
    created = true;
    const code = await spawnDone(
      agentBin,
      ['--bind', sock, '--', 'runc', 'create', '--preserve-fds', '1', '--bundle', bundle, '--pid-file', pidFile, container],
      logFd,
    );
    closeSync(logFd);
    if (code !== 0) throw new Error(`runc create: exit ${code}: ${readFileSync(join(bundle, 'create.log'), 'utf8')}`);
    if ((await spawnDone('runc', ['start', container])) !== 0) throw new Error('runc start failed');
    client = await AgentClient.connect(sock);
    const startMs = performance.now() - t0;
    const initPid = Number(readFileSync(pidFile, 'utf8'));
    console.log(`agent: pid ${client.hello.pid} inside, ${initPid} on the host; create+start+connect ${startMs.toFixed(1)} ms`);

    const viaAgent = async (argv: string[]) => {
      const t = performance.now();
      const p = client!.exec({ argv, env: ['PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin'] });
      p.stdout.resume();
      p.stderr.resume();
      const exit = await p.exited;
      if (exit.exitCode !== 0) throw new Error(`agent exec ${argv.join(' ')}: ${JSON.stringify(exit)}`);
      return performance.now() - t;
    };
    const viaRunc = async (argv: string[]) => {
      const t = performance.now();
      const code = await spawnDone('runc', ['exec', container, ...argv]);
      if (code !== 0) throw new Error(`runc exec ${argv.join(' ')}: exit ${code}`);
      return performance.now() - t;
    };
    const kb = Buffer.alloc(1024, 'x');
    const files = async () => {
      const t = performance.now();
      await client!.writeFile('/dev/shm/bench-1k', kb);
      const back = await client!.readFileBuffer('/dev/shm/bench-1k');
      if (!back.equals(kb)) throw new Error('file round trip differs');
      return performance.now() - t;
    };

    const py = ['python3', '-c', 'print(1)'];
    const hasPython = existsSync(join(rootfs, 'usr/bin/python3'));
    const rows: Record<string, number[]> = { agentTrue: [], runcTrue: [], agentPy: [], runcPy: [], files: [] };
    for (let i = 0; i < 5; i++) await viaAgent(['true']).then(() => viaRunc(['true']));
    for (let i = 0; i < N; i++) {
      // alternate the order, so neither always follows the other
      const pair: [string, () => Promise<number>][] = [['agentTrue', () => viaAgent(['true'])], ['runcTrue', () => viaRunc(['true'])]];
      for (const [k, f] of i % 2 ? pair.reverse() : pair) rows[k]!.push(await f());
      rows.files!.push(await files());
      if (hasPython && i < Math.min(N, 30)) {
        rows.agentPy!.push(await viaAgent(py));
        rows.runcPy!.push(await viaRunc(py));
      }
    }
    // bulk output: the same bytes through the agent's channel and through runc exec's pipe
    const MB = 256;
    const streamAgent = async () => {
      const t = performance.now();
      const p = client!.exec({ argv: ['head', '-c', `${MB}M`, '/dev/zero'], env: ['PATH=/usr/bin:/bin'] });
      let n = 0;
      p.stdout.on('data', (c: Buffer) => (n += c.length));
      await p.exited;
      if (n !== MB << 20) throw new Error(`agent stream: ${n} bytes`);
      return (MB / (performance.now() - t)) * 1000;
    };
    const streamRunc = () =>
      new Promise<number>((resolve, reject) => {
        const t = performance.now();
        const p = spawn('runc', ['exec', container, 'head', '-c', `${MB}M`, '/dev/zero'], { stdio: ['ignore', 'pipe', 'ignore'] });
        let n = 0;
        p.stdout.on('data', (c: Buffer) => (n += c.length));
        p.on('error', reject);
        p.on('close', () => (n === MB << 20 ? resolve((MB / (performance.now() - t)) * 1000) : reject(new Error(`runc stream: ${n} bytes`))));
      });
    const mbs = { agent: [] as number[], runc: [] as number[] };
    for (let i = 0; i < 3; i++) {
      mbs.agent.push(await streamAgent());
      mbs.runc.push(await streamRunc());
    }

    const status = readFileSync(`/proc/${initPid}/status`, 'utf8');
    const rss = Number(/^VmRSS:\s+(\d+)/m.exec(status)?.[1]);
    const pss = Number(/^Pss:\s+(\d+)/m.exec(readFileSync(`/proc/${initPid}/smaps_rollup`, 'utf8'))?.[1]);
    const anon = Number(/^RssAnon:\s+(\d+)/m.exec(status)?.[1]);

    const line = (name: string, xs: number[]) => `${name.padEnd(42)} median ${fmt(median(xs)).padStart(6)} ms   p95 ${fmt(p95(xs)).padStart(6)} ms   (n=${xs.length})`;
    console.log(`\nexec round trip in one container (${args.template}), order alternating:`);
    console.log(line('agent: exec `true`', rows.agentTrue!));
    console.log(line('runc exec <c> true', rows.runcTrue!));
    console.log(`ratio agent / runc exec: ${(median(rows.agentTrue!) / median(rows.runcTrue!)).toFixed(3)}`);
    if (hasPython) {
      console.log(line("agent: python3 -c 'print(1)'", rows.agentPy!));
      console.log(line("runc exec <c> python3 -c 'print(1)'", rows.runcPy!));
    }
    console.log(line('agent: files write + read 1 KB', rows.files!));
    console.log(`stream ${MB} MB of stdout into node: agent ${fmt(median(mbs.agent))} MB/s, runc exec pipe ${fmt(median(mbs.runc))} MB/s (median of 3)`);
    console.log(`agent as PID 1: VmRSS ${rss} kB (RssAnon ${anon} kB, Pss ${pss} kB; the binary's file pages are shared by every sandbox using the one installed binary)`);
  } finally {
    await cleanup();
  }
}

await main();
