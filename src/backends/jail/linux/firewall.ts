// Network isolation for Linux jail sandboxes, in one nftables table of coppice's own: `inet coppice`
// (ops/nft/coppice.nft is the same ruleset, commented, for operators). Sandbox traffic is what
// arrives on or leaves by a host-side veth `cpc<id>h`, recognised by its interface group
// (SANDBOX_IFGROUP). What it enforces:
//   - a sandbox reaches no service on the host, through its veth's host-side address or any other
//     (input: everything from a sandbox veth is dropped, except replies to connections the host
//     opened and the operator's `allowHostPorts`); IPv6 from sandboxes is dropped outright (it
//     would reach the host's link-local fe80:: address on the veth);
//   - a sandbox reaches no other sandbox (forward: sandbox veth -> any `cpc*` interface is dropped;
//     that also covers pool-ctl's `cpcbr0`/`cpcvm<N>h` guests on Linux);
//   - egress beyond the host is off unless the sandbox was created with `internet` (E2B's
//     allow_internet_access): its (veth . address) pair is in @egress, which the forward chain
//     accepts and the nat chain masquerades; never to link-local 169.254.0.0/16 (cloud metadata
//     services); nothing from outside opens a connection into a sandbox;
//   - anti-spoofing: a packet from `cpc<id>h` must carry that sandbox's address ((veth . address)
//     in @sandboxes), checked at priority raw, before conntrack sees it. Sandboxes run with
//     CAP_NET_RAW (docker's default set), so a root process in one can craft any source address.
//   - ICMP: a sandbox may ping its gateway address (10.78.0.1; kernel-answered, no service behind
//     it), nothing else on the host; ICMP errors about the host's own connections pass as
//     "related"; egress sandboxes can ping beyond the host.
//
// Cost: the rules are static (interface group and set lookups) and never change per sandbox; a
// create is one `nft` process adding one or two set elements (~6-7 ms on an idle host, 10-25 ms
// under a loaded test run, against a 170-350 ms create), a destroy one `nft` process removing them
// (~15 ms: nft's delete is slower than its add). No per-sandbox chains.
//
// Lifecycle: the table is made (or brought up to date, atomically, keeping its set elements) when
// the backend starts, so a table left by a crashed or SIGKILLed gateway is reused and the sandboxes
// it still protects keep their elements; elements whose veth is gone are pruned. close() removes
// the table, unless a sandbox veth still exists on the host (another coppice process's, or a leaked
// one): taking its isolation away would fail open, so the table stays and a warning says why. One
// coppice per host is the supported setup (the table, like the default subnet, is host-wide).
//
// Host-wide effect: egress needs `net.ipv4.ip_forward=1`, a setting of the whole host (every
// interface routes, not only sandboxes'). coppice turns it on only when the first egress sandbox is
// created, never for sandboxes without egress (then the forward chain is not even reached), and
// turns it back off when the table is removed if it was coppice that turned it on (FORWARD_MARK,
// so this also holds after a crash: the next coppice to remove the table does it).
import { existsSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import type { BackendLogger } from '../../types.ts';
import { intToIp, parseCidr } from '../address-pool.ts';
import { CommandError, run } from './run.ts';

export const TABLE = 'inet coppice';
/**
 * The interface group of every sandbox's host-side veth `cpc<id>h` (set in network.ts when the veth
 * is made): how the rules recognise sandbox traffic. Not a name wildcard: nft wildcards are
 * prefix-only (`"cpc*h"` is a literal name that matches nothing), and the prefix `cpc*` also
 * covers pool-ctl's Linux bridge `cpcbr0` and its guests' veths, which must not be filtered as
 * sandboxes (their replies to the gateway's SSH would fail the anti-spoofing check).
 */
export const SANDBOX_IFGROUP = 7878;
const G = SANDBOX_IFGROUP;
/** Every interface coppice hangs sandboxes or guests on: jail veths, pool-ctl's bridge and veths. */
export const COPPICE_IF = 'cpc*';
/** The exact name of a sandbox veth: used to find live sandboxes on the host. */
export const SANDBOX_VETH_RE = /^cpc[a-z0-9]{10}h$/;

export interface HostPort {
  proto: 'tcp' | 'udp';
  port: number;
}

export type FirewallLogger = BackendLogger;

export interface FirewallOptions {
  /** The backend's sandbox subnet (masqueraded when egress is on). */
  subnet: string;
  /**
   * The operator's explicit exceptions: host ports sandboxes may open connections to (any host
   * address, e.g. a DNS forwarder or a package proxy on the gateway address). Empty by default.
   * The table is host-wide: the last backend to start sets this list.
   */
  allowHostPorts?: HostPort[];
  logger: FirewallLogger;
  /** nft binary. Default `nft`. */
  nft?: string;
}

/**
 * DNS a sandbox may not reach (no internet, or a nameserver on the host) is refused at once (ICMP
 * port unreachable / TCP reset) rather than dropped: resolvers fail in milliseconds, not after
 * their 5 s x attempts timeouts. Everything else stays a silent drop.
 */
const DNS_REJECT = [`iifgroup ${G} udp dport 53 counter reject with icmpx type port-unreachable`, `iifgroup ${G} tcp dport 53 counter reject with tcp reset`];

/** Base chains: hook line, then rules. Exported so a test can check ops/nft/coppice.nft against them. */
export const CHAINS: Record<string, { hook: string; rules: string[] }> = {
  prerouting: {
    hook: 'type filter hook prerouting priority raw; policy accept;',
    rules: [
      `iifgroup ${G} meta nfproto ipv6 counter drop`,
      `iifgroup ${G} iifname . ip saddr != @sandboxes counter drop`,
    ],
  },
  input: {
    hook: 'type filter hook input priority filter; policy accept;',
    rules: [
      `iifgroup ${G} ct state established,related accept`,
      // Ping of the gateway (the only host address inside a sandbox subnet): a kernel-answered
      // diagnostic that exposes no service. Any other ICMP to the host is dropped below.
      `iifgroup ${G} ip daddr @nets icmp type echo-request accept`,
      `iifgroup ${G} meta l4proto . th dport @host_allow accept`,
      ...DNS_REJECT,
      `iifgroup ${G} counter drop`,
    ],
  },
  forward: {
    hook: 'type filter hook forward priority filter; policy accept;',
    rules: [
      `iifgroup ${G} oifname "${COPPICE_IF}" counter drop`,
      // Link-local (cloud metadata services such as 169.254.169.254 hand out the host's credentials)
      // is on the host's side of the trust boundary, even for sandboxes with internet access.
      `iifgroup ${G} ip daddr 169.254.0.0/16 counter drop`,
      `iifgroup ${G} iifname . ip saddr @egress accept`,
      ...DNS_REJECT,
      `iifgroup ${G} counter drop`,
      `oifgroup ${G} ct state established,related accept`,
      `oifgroup ${G} counter drop`,
    ],
  },
  postrouting: {
    hook: 'type nat hook postrouting priority srcnat; policy accept;',
    // Only packets the forward chain let out (egress sandboxes) get here from a sandbox subnet.
    rules: [`ip saddr @nets oifname != "${COPPICE_IF}" masquerade`],
  },
};

export const SETS: Record<string, string> = {
  /** Every sandbox's (host veth . address): the anti-spoofing list. */
  sandboxes: 'type ifname . ipv4_addr;',
  /** Sandboxes allowed beyond the host. */
  egress: 'type ifname . ipv4_addr;',
  /** Sandbox subnets of the backends that use this table (masquerade source; the gateway address for ping). */
  nets: 'type ipv4_addr; flags interval; auto-merge;',
  /** allowHostPorts. */
  host_allow: 'type inet_proto . inet_service;',
};

/** The whole ruleset as one atomic `nft -f` transaction that creates or updates the table in place. */
export function ensureScript(subnet: string, allow: HostPort[] = []): string {
  const { network, prefix } = parseCidr(subnet);
  const lines = [`add table ${TABLE}`];
  for (const [name, spec] of Object.entries(SETS)) lines.push(`add set ${TABLE} ${name} { ${spec} }`);
  lines.push(`flush set ${TABLE} host_allow`);
  for (const [name, c] of Object.entries(CHAINS)) lines.push(`add chain ${TABLE} ${name} { ${c.hook} }`, `flush chain ${TABLE} ${name}`);
  for (const [name, c] of Object.entries(CHAINS)) for (const r of c.rules) lines.push(`add rule ${TABLE} ${name} ${r}`);
  lines.push(`add element ${TABLE} nets { ${intToIp(network)}/${prefix} }`);
  if (allow.length > 0) lines.push(`add element ${TABLE} host_allow { ${allow.map((a) => `${a.proto} . ${a.port}`).join(', ')} }`);
  return lines.join('\n') + '\n';
}

const elem = (veth: string, ip: string) => `{ "${veth}" . ${ip} }`;

export interface TableElement {
  set: 'sandboxes' | 'egress';
  veth: string;
  ip: string;
}

const isMissingTable = (e: unknown) => e instanceof CommandError && /No such file or directory/.test(e.stderr);
const msg = (e: unknown) => (e instanceof Error ? e.message : String(e));
const IPV4_RE = /^\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}$/;

/** The per-sandbox elements of the table; [] when there is no table (or no nft). */
export async function listElements(nft = 'nft'): Promise<TableElement[]> {
  let out: string;
  try {
    out = (await run(nft, ['-j', 'list', 'table', ...TABLE.split(' ')])).stdout;
  } catch {
    return [];
  }
  const found: TableElement[] = [];
  for (const o of (JSON.parse(out) as { nftables: { set?: { name: string; elem?: unknown[] } }[] }).nftables) {
    const s = o.set;
    if (!s || (s.name !== 'sandboxes' && s.name !== 'egress')) continue;
    for (const e of s.elem ?? []) {
      const c = (e as { concat?: unknown }).concat;
      if (Array.isArray(c) && typeof c[0] === 'string' && typeof c[1] === 'string') found.push({ set: s.name, veth: c[0], ip: c[1] });
    }
  }
  return found;
}

/** Sandbox veths that exist on the host right now (whoever's they are). */
export function sandboxVeths(): string[] {
  try {
    return readdirSync('/sys/class/net').filter((n) => SANDBOX_VETH_RE.test(n));
  } catch {
    return [];
  }
}

const FORWARD_SYSCTL = '/proc/sys/net/ipv4/ip_forward';
/**
 * Exists while ip_forward is on because coppice turned it on. Host-wide like the setting (and, on
 * tmpfs, gone at reboot like it), so whichever coppice process removes the table turns forwarding
 * back off, also after the one that turned it on crashed.
 */
export const FORWARD_MARK = '/run/coppice-ip-forward';
/** Backends (firewalls) open in this process: the table stays until the last one closes. */
let openCount = 0;

export class Firewall {
  private readonly nft: string;
  private closed = false;

  private constructor(private readonly opts: FirewallOptions) {
    this.nft = opts.nft ?? 'nft';
  }

  /** Create or update the table (keeping its elements), prune elements of veths that are gone. */
  static async open(opts: FirewallOptions): Promise<Firewall> {
    const fw = new Firewall(opts);
    await fw.ensure();
    await fw.prune();
    openCount++;
    return fw;
  }

  private async nftScript(script: string): Promise<void> {
    await run(this.nft, ['-f', '-'], { input: script });
  }

  async ensure(): Promise<void> {
    const script = ensureScript(this.opts.subnet, this.opts.allowHostPorts);
    try {
      await this.nftScript(script);
    } catch (e) {
      if (e instanceof CommandError && e.exitCode === null && /ENOENT/.test(e.message)) {
        throw new Error(`${this.nft} not found (apt install nftables): sandbox network isolation needs it`, { cause: e });
      }
      // A table of another shape (an older coppice, or someone's hand edit) refuses `add set` with
      // a different type: replace it. Its elements are lost; the warning says so.
      this.opts.logger.warn({ table: TABLE, err: msg(e) }, 'nft table of another shape: replacing it (its sandboxes lose their elements)');
      await run(this.nft, ['delete', 'table', ...TABLE.split(' ')]).catch(() => undefined);
      await this.nftScript(script);
    }
  }

  /** Remove elements whose veth no longer exists (left by a crash). One `nft` call, only if any. */
  async prune(): Promise<void> {
    // Elements first, veths second: an element is added only once its veth exists, so one whose
    // veth is missing afterwards is gone for good (not a create racing us in another process).
    const elements = await listElements(this.nft);
    const live = new Set(sandboxVeths());
    const stale = elements.filter((e) => !live.has(e.veth));
    if (stale.length === 0) return;
    const script = stale.map((e) => `delete element ${TABLE} ${e.set} ${elem(e.veth, e.ip)}`).join('\n') + '\n';
    const names = stale.map((e) => `${e.set} ${e.veth} . ${e.ip}`);
    await this.nftScript(script).then(
      () => this.opts.logger.info({ stale: names }, 'nft: pruned elements of sandboxes that are gone'),
      (e) => this.opts.logger.warn({ stale: names, err: msg(e) }, 'nft: pruning stale elements failed'),
    );
  }

  /**
   * Admit a sandbox: its (veth . address) into @sandboxes and, with egress, into @egress. One `nft`
   * process. If the table is gone (removed by another coppice process's close while this one had
   * no sandboxes), it is made again first: a sandbox is never started without its rules.
   */
  async register(veth: string, ip: string, egress: boolean): Promise<void> {
    if (egress) this.enableForwarding();
    const script =
      `add element ${TABLE} sandboxes ${elem(veth, ip)}\n` + (egress ? `add element ${TABLE} egress ${elem(veth, ip)}\n` : '');
    try {
      await this.nftScript(script);
    } catch (e) {
      if (!isMissingTable(e)) throw e;
      this.opts.logger.warn({ table: TABLE }, 'nft table was missing (removed by another coppice process?): made again');
      await this.ensure();
      await this.nftScript(script);
    }
  }

  /**
   * Remove a sandbox's elements. Idempotent without knowing which sets it is in: in one transaction
   * each element is added (a no-op if present) and deleted. Without an address (a residue found
   * after a restart), its elements are looked up by veth. Never throws; returns what is left.
   */
  async unregister(veth: string, ip: string | null | undefined): Promise<string[]> {
    let targets: TableElement[];
    if (ip && IPV4_RE.test(ip)) {
      targets = (['sandboxes', 'egress'] as const).map((set) => ({ set, veth, ip }));
    } else {
      targets = (await listElements(this.nft)).filter((e) => e.veth === veth);
      if (targets.length === 0) return [];
    }
    const script = targets
      .map((t) => `add element ${TABLE} ${t.set} ${elem(t.veth, t.ip)}\ndelete element ${TABLE} ${t.set} ${elem(t.veth, t.ip)}`)
      .join('\n');
    try {
      await this.nftScript(script + '\n');
      return [];
    } catch (e) {
      if (isMissingTable(e)) return []; // no table, no elements
      return [`nft elements of ${veth} (${msg(e)})`];
    }
  }

  /**
   * net.ipv4.ip_forward is HOST-WIDE: with it on, the host routes between all its interfaces, not
   * only for sandboxes. Turned on at the first egress sandbox only; see the header for when it is
   * turned back off.
   */
  private enableForwarding(): void {
    if (readFileSync(FORWARD_SYSCTL, 'utf8').trim() === '1') return;
    writeFileSync(FORWARD_MARK, `set by coppice (pid ${process.pid}) at ${new Date().toISOString()}\n`);
    writeFileSync(FORWARD_SYSCTL, '1\n');
    this.opts.logger.warn({ sysctl: 'net.ipv4.ip_forward=1' }, 'turned on IPv4 forwarding (host-wide) for the first sandbox with internet access');
  }

  /** Remove the table (and undo ip_forward) unless sandboxes still depend on it. Idempotent. */
  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    openCount--;
    if (openCount > 0) return; // another backend in this process still uses the table
    const veths = sandboxVeths();
    if (veths.length > 0) {
      this.opts.logger.warn({ table: TABLE, veths }, 'nft table kept: sandbox veths still exist on this host and depend on it');
      return;
    }
    await run(this.nft, ['delete', 'table', ...TABLE.split(' ')]).catch((e) => {
      if (!isMissingTable(e)) this.opts.logger.warn({ table: TABLE, err: msg(e) }, 'nft: removing the table failed');
    });
    if (existsSync(FORWARD_MARK)) {
      try {
        writeFileSync(FORWARD_SYSCTL, '0\n');
        rmSync(FORWARD_MARK, { force: true });
        this.opts.logger.info({ sysctl: 'net.ipv4.ip_forward=0' }, 'turned IPv4 forwarding back off');
      } catch (e) {
        this.opts.logger.warn({ err: msg(e) }, 'could not turn IPv4 forwarding back off');
      }
    }
  }
}
