// Network isolation of Linux jail sandboxes (src/backends/jail/linux/firewall.ts), tested from inside
// real sandboxes against listeners this test starts itself: on the host (0.0.0.0, the gateway
// address, UDP, IPv6), in another sandbox, and in a network namespace of its own that plays "the
// internet" (a veth from the host, 10.251.X.1/24 here and .2 there). Only loopback and addresses of
// namespaces the test makes are used; everything it makes is named `cpt-*`/`cni*` and removed by name.
import assert from 'node:assert/strict';
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, readFileSync, rmdirSync, rmSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import { createLinuxJailBackend, findLeftovers, type CreateStep, type LinuxJailBackend } from '../../src/backends/jail/linux/index.ts';
import { CHAINS, ensureScript, FORWARD_MARK, listElements, sandboxVeths, SANDBOX_IFGROUP } from '../../src/backends/jail/linux/firewall.ts';
import { hostNameservers, parseNameservers, RESOLV_MARKER, usableNameservers } from '../../src/backends/jail/linux/dns.ts';
import type { SandboxHandle, Template } from '../../src/backends/types.ts';
import { startTestGateway, TEMPLATES_ROOT, type TestGateway } from '../helpers/gateway.ts';

const root = process.getuid?.() === 0;
let nftOk = false;
try {
  execFileSync('nft', ['--version'], { stdio: 'ignore' });
  nftOk = true;
} catch {
  /* no nftables */
}
const skip = !root ? 'needs root (runc, netns, nftables)' : !nftOk ? 'needs nft (apt install nftables)' : false;
const REPO = new URL('../..', import.meta.url).pathname;
const tag = randomBytes(3).toString('hex').slice(0, 5);

const sh = (file: string, args: string[]) => execFileSync(file, args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
const tryNft = (...args: string[]): string | null => {
  try {
    return sh('nft', args);
  } catch {
    return null;
  }
};
const listTable = () => tryNft('list', 'table', 'inet', 'coppice');
const ipForward = () => readFileSync('/proc/sys/net/ipv4/ip_forward', 'utf8').trim();

/** Packets counted by the first rule of `chain` whose text contains `needle`. */
function counter(chain: string, needle: string): number {
  const text = tryNft('list', 'chain', 'inet', 'coppice', chain) ?? '';
  const line = text.split('\n').find((l) => l.includes(needle) && l.includes('counter packets'));
  return Number(/counter packets (\d+)/.exec(line ?? '')?.[1] ?? NaN);
}

/**
 * Our own runc state root, through a `runc` wrapper first on PATH: a gateway starting elsewhere on
 * this host reconciles against `runc list` (every container under the default root) and would
 * destroy our sandboxes as its orphans mid-test. Network behaviour does not depend on the root.
 */
const RUNC_DIR = `/tmp/coppice-netiso-bin-${tag}`;
const RUNC_ROOT = `/run/coppice-netiso-runc-${tag}`;
function privateRunc(): void {
  const real = sh('sh', ['-c', 'command -v runc']).trim();
  mkdirSync(RUNC_DIR, { recursive: true });
  writeFileSync(join(RUNC_DIR, 'runc'), `#!/bin/sh\nexec ${real} --root ${RUNC_ROOT} "$@"\n`, { mode: 0o755 });
  process.env.PATH = `${RUNC_DIR}:${process.env.PATH}`;
}
function dropPrivateRunc(): void {
  rmSync(RUNC_DIR, { recursive: true, force: true });
  try {
    rmdirSync(RUNC_ROOT); // empty once every container is deleted; left (and visible) otherwise
  } catch {
    /* not empty or never made */
  }
}
if (!skip) privateRunc();
process.on('exit', dropPrivateRunc);

// --- "The internet": a netns reached through a veth from the host, with TCP+UDP listeners in it.
const INET_NS = `cpt-inet-${tag}`;
const INET_HOST_IF = `cni${tag}a`;
const INET_PEER_IF = `cni${tag}b`;
let inetNet = ''; // 10.251.X
let metaNet = ''; // 169.254.Y: a link-local /24 in the same netns, standing in for a cloud metadata service
let inetProc: ChildProcess | undefined;
const inetEvents: { conn?: string; dgram?: string; msg?: string }[] = [];
let inetTcp = 0;
let inetUdp = 0;

function pickNet(prefix: string): string {
  const used = sh('ip', ['-4', '-o', 'addr']) + sh('ip', ['-4', 'route']);
  for (let i = 0; i < 50; i++) {
    const x = 1 + (randomBytes(1)[0]! % 254);
    if (!used.includes(`${prefix}.${x}.`)) return `${prefix}.${x}`;
  }
  throw new Error(`no free ${prefix}.X.0/24`);
}
/**
 * The sandboxes' own subnet, not the default 10.78.0.0/24: other test processes on this host use
 * that one, and two address pools handing out the same addresses collide (`route add`: File exists).
 */
const SUBNET = `${pickNet('10.79')}.0/24`;

async function startInternet(): Promise<void> {
  inetNet = pickNet('10.251');
  sh('ip', ['netns', 'add', INET_NS]);
  sh('ip', ['link', 'add', INET_HOST_IF, 'type', 'veth', 'peer', 'name', INET_PEER_IF, 'netns', INET_NS]);
  sh('ip', ['addr', 'add', `${inetNet}.1/24`, 'dev', INET_HOST_IF]); // its connected route is the "route for it"
  sh('ip', ['link', 'set', INET_HOST_IF, 'up']);
  sh('ip', ['-n', INET_NS, 'addr', 'add', `${inetNet}.2/24`, 'dev', INET_PEER_IF]);
  sh('ip', ['-n', INET_NS, 'link', 'set', INET_PEER_IF, 'up']);
  sh('ip', ['-n', INET_NS, 'link', 'set', 'lo', 'up']);
  sh('ip', ['-n', INET_NS, 'route', 'add', 'default', 'via', `${inetNet}.1`]);
  metaNet = pickNet('169.254');
  sh('ip', ['-n', INET_NS, 'addr', 'add', `${metaNet}.2/24`, 'dev', INET_PEER_IF]);
  sh('ip', ['route', 'add', `${metaNet}.0/24`, 'dev', INET_HOST_IF]); // goes with the veth
  const script = `
    const net = require('net'), dgram = require('dgram');
    const out = (o) => process.stdout.write(JSON.stringify(o) + '\\n');
    const t = net.createServer((s) => { out({ conn: s.remoteAddress }); s.end('HTTP/1.0 200 OK\\r\\nContent-Length: 8\\r\\n\\r\\ninet-ok\\n'); });
    t.listen(0, '0.0.0.0', () => {
      const u = dgram.createSocket('udp4');
      u.on('message', (m, r) => out({ dgram: r.address, msg: m.toString() }));
      u.bind(0, '0.0.0.0', () => out({ ready: true, tcp: t.address().port, udp: u.address().port }));
    });`;
  inetProc = spawn('ip', ['netns', 'exec', INET_NS, process.execPath, '-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    let buf = '';
    inetProc!.stdout!.on('data', (b: Buffer) => {
      buf += b.toString();
      let i;
      while ((i = buf.indexOf('\n')) >= 0) {
        const ev = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (ev.ready) {
          inetTcp = ev.tcp;
          inetUdp = ev.udp;
          resolve();
        } else inetEvents.push(ev);
      }
    });
    inetProc!.once('exit', (code) => reject(new Error(`internet listener exited (${code})`)));
  });
}

function stopInternet(): void {
  inetProc?.kill('SIGKILL');
  try {
    sh('ip', ['link', 'del', INET_HOST_IF]);
  } catch {
    /* already gone */
  }
  try {
    sh('ip', ['netns', 'del', INET_NS]);
  } catch {
    /* already gone */
  }
}

// --- Host listeners: record who connected, answer with a token (HTTP-shaped, for wget too).
interface Listener {
  port: number;
  peers: string[];
  close(): Promise<void>;
}

function tcpListener(host: string, token: string): Promise<Listener> {
  const peers: string[] = [];
  const server = net.createServer((s) => {
    peers.push(s.remoteAddress ?? '?');
    s.end(`HTTP/1.0 200 OK\r\nContent-Length: ${token.length + 1}\r\n\r\n${token}\n`);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen({ port: 0, host, ipv6Only: host.includes(':') }, () =>
      resolve({
        port: (server.address() as net.AddressInfo).port,
        peers,
        close: () => new Promise<void>((r) => server.close(() => r())),
      }),
    );
  });
}

function udpListener(host: string): Promise<Listener> {
  const peers: string[] = [];
  const sock = dgram.createSocket('udp4');
  sock.on('message', (_m, r) => peers.push(r.address));
  return new Promise((resolve) => {
    sock.bind(0, host, () => resolve({ port: sock.address().port, peers, close: () => new Promise<void>((r) => sock.close(() => r())) }));
  });
}

/** Connect from the host (not a sandbox); resolves with what the peer sent. */
function hostConnect(host: string, port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host, port, timeout: 2000 });
    let data = '';
    s.on('data', (b) => (data += b.toString()));
    s.on('end', () => resolve(data));
    s.on('timeout', () => s.destroy(new Error('timeout')));
    s.on('error', reject);
  });
}

// --- Probes run inside sandboxes.
const PY_TCP = `
import socket, sys
try:
    s = socket.create_connection((sys.argv[1], int(sys.argv[2])), timeout=2)
    print("CONNECTED", s.recv(200).decode().strip().splitlines()[-1])
except Exception as e:
    print("FAILED", type(e).__name__)
`;
const PY_UDP = `
import socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(3): s.sendto(b"udp-probe", (sys.argv[1], int(sys.argv[2])))
print("SENT")
`;
// A UDP datagram with a source address of our choosing (IP_HDRINCL; root in a sandbox has CAP_NET_RAW).
const PY_SPOOF = `
import socket, struct, sys
src, dst, port, payload = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4].encode()
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
udp = struct.pack("!HHHH", 40000, port, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0x1234, 0, 64, 17, 0, socket.inet_aton(src), socket.inet_aton(dst))
for i in range(3): s.sendto(ip + udp, (dst, 0))
print("SENT")
`;

describe('network isolation: sandboxes behind the inet coppice table', { skip }, () => {
  let gw: TestGateway;
  let gwClosed = false;
  const listeners: Listener[] = [];
  let forwardBefore = '';
  // A: base + internet, B: base, C: busybox, D: busybox + internet
  let A: { id: string; ip: string };
  let B: { id: string; ip: string };
  let C: { id: string; ip: string };
  let D: { id: string; ip: string };
  let gatewayIp = '';
  let anyTcp: Listener;
  let gwTcp: Listener;
  let anyUdp: Listener;
  let v6Tcp: Listener;

  const create = async (templateID: string, internet: boolean) => {
    const r = await gw.api('POST', '/sandboxes', { templateID, ...(internet ? { allow_internet_access: true } : {}) });
    assert.equal(r.status, 201, JSON.stringify(r.body));
    return { id: r.body.sandboxID as string, ip: r.body.ip as string };
  };
  const exec = async (id: string, argv: string[]) => {
    const r = await gw.api('POST', `/sandboxes/${id}/exec`, { argv, user: 'root', timeoutMs: 15_000 });
    assert.equal(r.status, 200, JSON.stringify(r.body));
    return r.body as { exitCode: number | null; stdout: string; stderr: string };
  };
  const py = (id: string, script: string, ...args: string[]) => exec(id, ['python3', '-c', script, ...args]);
  const nc = (id: string, ip: string, port: number) => exec(id, ['sh', '-c', `nc -w 2 ${ip} ${port} </dev/null; echo "rc=$?"`]);
  // Not `wget -T`: Debian's busybox 1.35 wget segfaults with it.
  const wget = (id: string, url: string) => exec(id, ['timeout', '3', 'wget', '-q', '-O', '-', url]);

  before(async () => {
    forwardBefore = ipForward();
    await startInternet();
    gw = await startTestGateway(['--jail-subnet', SUBNET]);
    // The egress sandboxes first: forwarding is on from here, so what B and C cannot reach is the
    // rules' doing, not forwarding being off.
    A = await create('base', true);
    D = await create('busybox', true);
    B = await create('base', false);
    C = await create('busybox', false);
    gatewayIp = A.ip.replace(/\.\d+$/, '.1');
    anyTcp = await tcpListener('0.0.0.0', 'host-any-ok');
    gwTcp = await tcpListener(gatewayIp, 'host-gw-ok');
    anyUdp = await udpListener('0.0.0.0');
    v6Tcp = await tcpListener('::', 'host-v6-ok');
    listeners.push(anyTcp, gwTcp, anyUdp, v6Tcp);
  });

  after(async () => {
    for (const l of listeners) await l.close();
    if (!gwClosed) await gw.close();
    stopInternet();
  });

  test('the table holds the isolation rules; ops/nft/coppice.nft is the same ruleset and loads', () => {
    const table = listTable();
    assert.ok(table, 'table inet coppice exists while the gateway runs');
    const sample = readFileSync(join(REPO, 'ops/nft/coppice.nft'), 'utf8');
    for (const [chain, c] of Object.entries(CHAINS)) {
      assert.ok(table.includes(`chain ${chain} {`), chain);
      assert.ok(sample.includes(c.hook), `sample has the hook of ${chain}`);
      for (const rule of c.rules) {
        // `nft list` shows counters as `counter packets N bytes M`.
        const listed = rule.replace(/\bcounter\b/, 'counter packets');
        assert.ok(table.split('\n').some((l) => l.trim().startsWith(listed.split(' counter')[0]!)), `listed: ${rule}`);
        assert.ok(sample.includes(`\t\t${rule}\n`), `sample has: ${rule}`);
      }
    }
    // Anti-spoofing: a packet from a sandbox veth must carry that sandbox's address.
    assert.match(table, new RegExp(`iifgroup ${SANDBOX_IFGROUP} iifname \\. ip saddr != @sandboxes counter packets \\d+ bytes \\d+ drop`));
    assert.doesNotThrow(() => sh('nft', ['-c', '-f', join(REPO, 'ops/nft/coppice.nft')]));
    // Every sandbox's pair is in @sandboxes; only the egress ones in @egress.
    const veth = (id: string) => `cpc${id}h`;
    assert.match(table, new RegExp(`"${veth(A.id)}" \\. ${A.ip.replace(/\./g, '\\.')}`));
    assert.equal(sh('ip', ['-o', 'link', 'show', 'dev', veth(C.id)]).includes(`group ${SANDBOX_IFGROUP}`), true);
  });

  test('set elements: every sandbox in @sandboxes, only allow_internet_access ones in @egress', async () => {
    const els = await listElements();
    const has = (set: string, s: { id: string; ip: string }) => els.some((e) => e.set === set && e.veth === `cpc${s.id}h` && e.ip === s.ip);
    for (const s of [A, B, C, D]) assert.ok(has('sandboxes', s), `${s.id} in @sandboxes`);
    assert.ok(has('egress', A) && has('egress', D), 'egress sandboxes in @egress');
    assert.ok(!has('egress', B) && !has('egress', C), 'the others are not');
  });

  test('a sandbox reaches no host service: 0.0.0.0, the gateway address, another host address, UDP, ICMP, IPv6', async () => {
    // Controls: the listeners work, from the host.
    assert.match(await hostConnect('127.0.0.1', anyTcp.port), /host-any-ok/);
    assert.match(await hostConnect(gatewayIp, gwTcp.port), /host-gw-ok/);
    anyTcp.peers.length = 0;
    gwTcp.peers.length = 0;
    const hostIf = `${inetNet}.1`; // an address of the host that is not the gateway address
    const v6Before = counter('prerouting', 'nfproto ipv6');
    const hostLl = await hostLinkLocal(`cpc${B.id}h`);
    const results = await Promise.all([
      nc(C.id, gatewayIp, anyTcp.port),
      nc(C.id, gatewayIp, gwTcp.port),
      wget(C.id, `http://${gatewayIp}:${anyTcp.port}/`),
      nc(D.id, hostIf, anyTcp.port), // an egress sandbox neither: the host is not "beyond the host"
      py(A.id, PY_TCP, gatewayIp, String(anyTcp.port)),
      py(A.id, PY_TCP, hostIf, String(anyTcp.port)),
      py(B.id, PY_TCP, gatewayIp, String(gwTcp.port)),
      py(B.id, PY_UDP, gatewayIp, String(anyUdp.port)),
      py(A.id, PY_UDP, hostIf, String(anyUdp.port)),
      exec(C.id, ['ping', '-c', '1', '-W', '1', hostIf]),
      py(B.id, PY_TCP, `${hostLl}%eth0`, String(v6Tcp.port)),
    ]);
    const [ncAny, ncGw, wg, ncD, pyA, pyA2, pyB, , , ping, pyV6] = results;
    assert.match(ncAny!.stdout, /rc=1/);
    assert.doesNotMatch(ncAny!.stdout, /host-any-ok/);
    assert.doesNotMatch(ncGw!.stdout, /host-gw-ok/);
    assert.notEqual(wg!.exitCode, 0, 'wget fails');
    assert.doesNotMatch(ncD!.stdout, /host-any-ok/);
    for (const r of [pyA, pyA2, pyB, pyV6]) assert.match(r!.stdout, /^FAILED/, r!.stdout + r!.stderr);
    assert.notEqual(ping!.exitCode, 0, 'no ping to a host address other than the gateway');
    await sleep(200);
    assert.deepEqual(anyTcp.peers, [], 'nothing reached the 0.0.0.0 listener');
    assert.deepEqual(gwTcp.peers, [], 'nothing reached the gateway-address listener');
    assert.deepEqual(anyUdp.peers, [], 'no datagram reached the host');
    assert.deepEqual(v6Tcp.peers, [], 'nothing reached the IPv6 listener');
    assert.ok(counter('prerouting', 'nfproto ipv6') > v6Before, 'IPv6 from the sandbox was dropped at prerouting');
    // The one exception: a sandbox pings its gateway (kernel-answered, no service). And an egress
    // sandbox pings beyond the host.
    const pingGw = await exec(C.id, ['ping', '-c', '1', '-W', '2', gatewayIp]);
    assert.equal(pingGw.exitCode, 0, pingGw.stdout + pingGw.stderr);
    const pingOut = await exec(D.id, ['ping', '-c', '1', '-W', '2', `${inetNet}.2`]);
    assert.equal(pingOut.exitCode, 0, pingOut.stdout + pingOut.stderr);
  });

  test('sandboxes cannot reach each other; the host can open connections into a sandbox', async () => {
    await exec(C.id, ['sh', '-c', 'setsid nc -ll -p 8000 -e echo sandbox-c-ok </dev/null >/dev/null 2>&1 &']);
    let got = '';
    for (let i = 0; i < 50 && !got.includes('sandbox-c-ok'); i++) {
      got = await hostConnect(C.ip, 8000).catch(() => '');
      if (!got) await sleep(100);
    }
    assert.match(got, /sandbox-c-ok/, 'the host reaches the listener in C (replies are established traffic)');
    const [fromA, fromB, fromD] = await Promise.all([
      py(A.id, PY_TCP, C.ip, '8000'),
      py(B.id, PY_TCP, C.ip, '8000'),
      nc(D.id, C.ip, 8000),
    ]);
    assert.match(fromA.stdout, /^FAILED/, 'egress sandbox A -> C');
    assert.match(fromB.stdout, /^FAILED/, 'B -> C');
    assert.doesNotMatch(fromD.stdout, /sandbox-c-ok/, 'D -> C');
  });

  test('egress: off by default, on with allow_internet_access (masqueraded behind the host), never link-local', async () => {
    assert.equal(ipForward(), '1', 'forwarding on (an egress sandbox exists)');
    if (forwardBefore === '0') assert.ok(existsSync(FORWARD_MARK), 'coppice marked it as set by coppice');
    inetEvents.length = 0;
    const [a, d, dw, b, c, meta] = await Promise.all([
      py(A.id, PY_TCP, `${inetNet}.2`, String(inetTcp)),
      nc(D.id, `${inetNet}.2`, inetTcp),
      wget(D.id, `http://${inetNet}.2:${inetTcp}/`),
      py(B.id, PY_TCP, `${inetNet}.2`, String(inetTcp)),
      nc(C.id, `${inetNet}.2`, inetTcp),
      py(A.id, PY_TCP, `${metaNet}.2`, String(inetTcp)), // link-local (cloud metadata): never
    ]);
    assert.match(a.stdout, /^CONNECTED inet-ok/, a.stdout + a.stderr);
    assert.match(d.stdout, /inet-ok/);
    assert.match(dw.stdout, /inet-ok/, 'wget too');
    assert.match(b.stdout, /^FAILED/, 'B without internet');
    assert.doesNotMatch(c.stdout, /inet-ok/, 'C without internet');
    assert.match(meta.stdout, /^FAILED/, 'no link-local (169.254/16) even with internet access');
    await sleep(200);
    const peers = inetEvents.filter((e) => e.conn).map((e) => e.conn);
    assert.equal(peers.length, 3, `A, D (nc) and D (wget) connected: ${JSON.stringify(peers)}`);
    assert.ok(peers.every((p) => p === `${inetNet}.1`), `masqueraded as the host: ${JSON.stringify(peers)}`);
  });

  test('anti-spoofing: a forged source address is dropped at prerouting (raw socket as root in a sandbox)', async () => {
    inetEvents.length = 0;
    const before = counter('prerouting', 'saddr != @sandboxes');
    await py(B.id, PY_SPOOF, A.ip, `${inetNet}.2`, String(inetUdp), 'spoof-b-as-a'); // no egress, borrowing A's
    await py(A.id, PY_SPOOF, A.ip.replace(/\.\d+$/, '.250'), `${inetNet}.2`, String(inetUdp), 'spoof-a-as-250');
    await py(A.id, PY_SPOOF, A.ip, `${inetNet}.2`, String(inetUdp), 'honest-a'); // control
    await sleep(300);
    const msgs = inetEvents.filter((e) => e.dgram).map((e) => `${e.msg}@${e.dgram}`);
    assert.ok(msgs.includes(`honest-a@${inetNet}.1`), `the honest raw datagram arrives: ${JSON.stringify(msgs)}`);
    assert.ok(!msgs.some((m) => m.startsWith('spoof')), `no forged datagram arrives: ${JSON.stringify(msgs)}`);
    assert.ok(counter('prerouting', 'saddr != @sandboxes') - before >= 6, 'the anti-spoofing rule dropped them');
  });

  test('DNS: an egress sandbox gets the host\'s upstream nameservers; the others their gateway address (refused there)', async () => {
    const ns = hostNameservers();
    const a = (await exec(A.id, ['cat', '/etc/resolv.conf'])).stdout;
    const b = (await exec(B.id, ['cat', '/etc/resolv.conf'])).stdout;
    if (ns.length > 0) {
      assert.ok(a.startsWith(RESOLV_MARKER), a);
      assert.deepEqual(parseNameservers(a), ns);
    }
    assert.ok(b.startsWith(RESOLV_MARKER), b);
    assert.deepEqual(parseNameservers(b), [SUBNET.replace(/\.0\/24$/, '.1')]);
    // The filtering itself: loopback, IPv6 and the host's own addresses are unusable from a sandbox.
    assert.deepEqual(usableNameservers(['127.0.0.53', '::1', 'fd00::1', '10.9.8.7', '192.0.2.99', '0.0.0.0'], new Set(['192.0.2.99'])), ['10.9.8.7']);
  });

  test('destroy removes the elements; findLeftovers reports a stale element for an id', async () => {
    for (const s of [A, B]) assert.equal((await gw.api('DELETE', `/sandboxes/${s.id}`)).status, 204);
    const els = await listElements();
    assert.ok(!els.some((e) => e.veth === `cpc${A.id}h` || e.veth === `cpc${B.id}h`), JSON.stringify(els));
    assert.deepEqual(await findLeftovers([A.id, B.id], { stateDir: gw.stateDir }), []);
    const ghost = `zz${tag}zzz`.slice(0, 10);
    sh('nft', ['add', 'element', 'inet', 'coppice', 'egress', `{ "cpc${ghost}h" . 10.78.0.254 }`]);
    try {
      assert.deepEqual(await findLeftovers([ghost]), [`nft element inet coppice egress cpc${ghost}h . 10.78.0.254`]);
    } finally {
      sh('nft', ['delete', 'element', 'inet', 'coppice', 'egress', `{ "cpc${ghost}h" . 10.78.0.254 }`]);
    }
  });

  test('gateway close (drain) removes the table and turns forwarding back off', async (t) => {
    await gw.close();
    gwClosed = true;
    const foreign = sandboxVeths();
    if (foreign.length > 0) {
      // Another coppice on this host has sandboxes: their isolation depends on the table.
      assert.ok(listTable(), `kept for ${foreign.join(', ')}`);
      t.diagnostic(`table kept: ${foreign.length} sandbox veth(s) of another coppice on this host`);
      return;
    }
    assert.equal(listTable(), null, 'nft list table inet coppice fails');
    assert.equal(tryNft('list', 'table', 'inet', 'coppice'), null);
    if (forwardBefore === '0') assert.equal(ipForward(), '0', 'ip_forward back to 0');
    assert.equal(existsSync(FORWARD_MARK), false);
  });
});

describe('network isolation: backend options, failure paths, a table left by a crash', { skip }, () => {
  const template: Template = { name: 'busybox', path: join(TEMPLATES_ROOT, 'busybox-template'), backend: 'jail' };
  const limits = { memoryMiB: 64, cpus: 0.5, pids: 64 };
  const ids: string[] = [];
  const live = new Map<string, SandboxHandle>();
  const failAt = new Map<string, CreateStep>();
  const warnings: string[] = [];
  /** Per sandbox id: when each create step began (performance.now()). */
  const stepAt = new Map<string, Map<CreateStep, number>>();
  const opened: LinuxJailBackend[] = [];
  let stateDir = '';
  let allowed: Listener;
  let other: Listener;

  const newId = () => {
    const id = `n${randomBytes(8).toString('hex')}`.slice(0, 10);
    ids.push(id);
    return id;
  };
  const open = async (extra: { allowHostPorts?: { proto: 'tcp' | 'udp'; port: number }[] } = {}) => {
    const b = await createLinuxJailBackend({
      stateDir,
      subnet: SUBNET,
      logger: { info: () => undefined, warn: (_o, msg) => warnings.push(msg ?? '') },
      hooks: {
        beforeStep(step, id) {
          if (!stepAt.has(id)) stepAt.set(id, new Map());
          stepAt.get(id)!.set(step, performance.now());
          if (failAt.get(id) === step) throw new Error(`injected failure at ${step}`);
        },
      },
      ...extra,
    });
    opened.push(b);
    return b;
  };
  const create = async (b: LinuxJailBackend, internet: boolean, id = newId()) => {
    const h = await b.create({ id, template, limits, internet });
    live.set(id, h);
    return h;
  };
  const destroy = async (b: LinuxJailBackend, h: SandboxHandle) => {
    await b.destroy(h);
    live.delete(h.id);
  };
  const elementsOf = async (id: string) => (await listElements()).filter((e) => e.veth === `cpc${id}h`);
  const runIn = async (b: LinuxJailBackend, h: SandboxHandle, cmd: string) => {
    const p = b.exec(h, { argv: ['sh', '-c', cmd], user: 'root' });
    let out = '';
    p.stdout.on('data', (d: Buffer) => (out += d.toString()));
    p.stderr.resume();
    p.stdin.end();
    await p.exited;
    return out;
  };

  before(async () => {
    stateDir = sh('mktemp', ['-d', '/tmp/coppice-netiso-XXXXXX']).trim();
    allowed = await tcpListener('0.0.0.0', 'allowed-ok');
    other = await tcpListener('0.0.0.0', 'other-ok');
  });

  after(async () => {
    const b = opened.at(-1);
    for (const h of live.values()) await b?.destroy(h);
    for (const x of opened) await x.close();
    await allowed.close();
    await other.close();
    const left = ids.length > 0 ? await findLeftovers(ids, { stateDir }) : [];
    sh('rm', ['-rf', stateDir]);
    assert.deepEqual(left, []);
  });

  test('a table of another shape (an older version, a hand edit) is replaced at start', async (t) => {
    if (listTable() || sandboxVeths().length > 0) return t.skip('a coppice table or sandbox is live on this host: not touching it');
    sh('nft', ['add', 'table', 'inet', 'coppice']);
    sh('nft', ['add', 'set', 'inet', 'coppice', 'sandboxes', '{ type ipv4_addr; }']);
    const b = await open();
    assert.ok(warnings.some((w) => /another shape/.test(w)), JSON.stringify(warnings));
    assert.match(listTable() ?? '', /type ifname \. ipv4_addr/);
    await b.close();
    assert.equal(listTable(), null, 'closed with no sandbox: the table is gone');
  });

  test('a table left by a crash is reused: elements of live veths kept, stale ones pruned', async () => {
    // The crash remnant: the table as coppice makes it, with elements for a sandbox that is gone.
    if (!listTable()) execFileSync('nft', ['-f', '-'], { input: ensureScript(SUBNET) });
    const ghost = `cpcyy${tag}yyyh`.slice(0, 13) + 'h';
    sh('nft', ['add', 'element', 'inet', 'coppice', 'sandboxes', `{ "${ghost}" . 10.78.0.253 }`]);
    sh('nft', ['add', 'element', 'inet', 'coppice', 'egress', `{ "${ghost}" . 10.78.0.253 }`]);
    await open({ allowHostPorts: [{ proto: 'tcp', port: allowed.port }] });
    assert.ok(listTable());
    assert.deepEqual((await listElements()).filter((e) => e.veth === ghost), [], 'stale elements pruned');
    assert.match(listTable()!, new RegExp(`tcp \\. ${allowed.port}`), '@host_allow from allowHostPorts');
  });

  test('allowHostPorts is the one explicit exception: that port on the host is reachable, others are not', async () => {
    const b = opened.at(-1)!;
    const h = await create(b, false);
    const gwIp = h.ip.replace(/\.\d+$/, '.1');
    const [yes, no] = await Promise.all([
      runIn(b, h, `nc -w 2 ${gwIp} ${allowed.port} </dev/null; echo rc=$?`),
      runIn(b, h, `nc -w 2 ${gwIp} ${other.port} </dev/null; echo rc=$?`),
    ]);
    assert.match(yes, /allowed-ok/);
    assert.doesNotMatch(no, /other-ok/);
    assert.deepEqual(other.peers, []);
    await destroy(b, h);
  });

  test('every failed create removes its set elements (failure at and after the firewall step, with internet)', async () => {
    const b = opened.at(-1)!;
    for (const step of ['firewall', 'config', 'runc-create', 'runc-start'] as CreateStep[]) {
      const id = newId();
      failAt.set(id, step);
      await assert.rejects(b.create({ id, template, limits, internet: true }), new RegExp(`failed at step "${step}"`));
      assert.deepEqual(await elementsOf(id), [], `no element after a failure at ${step}`);
      assert.deepEqual(await findLeftovers([id], { stateDir }), [], step);
    }
  });

  test('destroy without a known address (residue found after a restart) still removes the elements', async () => {
    const b = opened.at(-1)!;
    const h = await create(b, true);
    assert.equal((await elementsOf(h.id)).length, 2);
    await destroy(b, { ...h, ip: '' });
    assert.deepEqual(await elementsOf(h.id), []);
  });

  test('per-create cost of the firewall step (one nft process)', async (t) => {
    const b = opened.at(-1)!;
    const cost: number[] = [];
    const made: SandboxHandle[] = [];
    for (let i = 0; i < 10; i++) {
      const h = await create(b, i % 2 === 0);
      const at = stepAt.get(h.id)!;
      cost.push(at.get('config')! - at.get('firewall')!);
      made.push(h);
    }
    const d0 = performance.now();
    for (const h of made) await destroy(b, h);
    const sorted = [...cost].sort((x, y) => x - y);
    t.diagnostic(`firewall step per create: median ${sorted[5]!.toFixed(1)} ms, max ${sorted[9]!.toFixed(1)} ms; destroy of 10: ${(performance.now() - d0).toFixed(0)} ms`);
    assert.ok(sorted[5]! < 100, `median ${sorted[5]} ms`);
  });

  test('close keeps the table while a sandbox veth exists (fail closed), removes it when none is left', async (t) => {
    const b = opened.at(-1)!;
    const h = await create(b, false);
    for (const x of opened) await x.close();
    assert.ok(listTable(), 'kept: a sandbox still depends on it');
    assert.ok(warnings.some((w) => /table kept/.test(w)));
    await destroy(b, h);
    if (sandboxVeths().length > 0) return t.skip('another coppice on this host has sandboxes');
    const again = await open();
    await again.close();
    assert.equal(listTable(), null);
  });
});

/** The host's link-local IPv6 address on `dev`, once duplicate address detection is over. */
async function hostLinkLocal(dev: string): Promise<string> {
  for (let i = 0; i < 50; i++) {
    const out = sh('ip', ['-6', '-o', 'addr', 'show', 'dev', dev, 'scope', 'link']);
    const m = /inet6 (fe80::[0-9a-f:]+)\/64/.exec(out);
    if (m && !out.includes('tentative')) return m[1]!;
    await sleep(100);
  }
  throw new Error(`no usable link-local address on ${dev}`);
}

