// Nameservers for sandboxes with internet access: the host's upstream ones, when a sandbox can reach
// them. A sandbox reaches nothing on the host (firewall.ts), so loopback servers (a local stub such
// as systemd-resolved's 127.0.0.53) and servers on one of the host's own addresses are unusable;
// neither are IPv6 ones (sandboxes have IPv4 only). When /etc/resolv.conf names only such servers,
// systemd-resolved's list of real upstreams is tried; failing that the template's file stays as is.
import { readFileSync } from 'node:fs';
import { networkInterfaces } from 'node:os';

export const RESOLV_SOURCES = ['/etc/resolv.conf', '/run/systemd/resolve/resolv.conf'];
/** glibc reads at most three. */
const MAXNS = 3;

export function parseNameservers(text: string): string[] {
  const out: string[] = [];
  for (const line of text.split('\n')) {
    const m = /^\s*nameserver\s+(\S+)/.exec(line);
    if (m) out.push(m[1]!);
  }
  return out;
}

function hostAddresses(): Set<string> {
  const set = new Set<string>();
  for (const list of Object.values(networkInterfaces())) for (const a of list ?? []) set.add(a.address);
  return set;
}

/** IPv4 nameservers a sandbox with egress can use; [] if there are none. */
export function usableNameservers(candidates: string[], local = hostAddresses()): string[] {
  return candidates.filter((ns) => {
    const m = /^(\d{1,3})\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.exec(ns);
    return m !== null && m[1] !== '127' && m[1] !== '0' && !local.has(ns);
  });
}

export function hostNameservers(sources = RESOLV_SOURCES): string[] {
  for (const file of sources) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch {
      continue;
    }
    const usable = usableNameservers(parseNameservers(text));
    if (usable.length > 0) return usable.slice(0, MAXNS);
  }
  return [];
}

/** Marks a resolv.conf coppice wrote, so a later sandbox made from a snapshot may refresh it. */
export const RESOLV_MARKER = '# coppice: the host\'s upstream nameservers (sandbox created with internet access)';

export function resolvConfText(nameservers: string[]): string {
  return `${RESOLV_MARKER}\n${nameservers.map((ns) => `nameserver ${ns}`).join('\n')}\n`;
}
