// IPv4 arithmetic shared by the backends (address pools, pool-ctl's guest addresses).

/** The address as an unsigned 32-bit number; null when it is not a dotted quad. */
export function tryIpToInt(ip: string): number | null {
  const parts = ip.split('.');
  if (parts.length !== 4) return null;
  let n = 0;
  for (const p of parts) {
    if (!/^\d{1,3}$/.test(p) || Number(p) > 255) return null;
    n = n * 256 + Number(p);
  }
  return n;
}

export function ipToInt(ip: string): number {
  const n = tryIpToInt(ip);
  if (n === null) throw new Error(`not an IPv4 address: ${ip}`);
  return n;
}

export function intToIp(n: number): string {
  return [n >>> 24, (n >>> 16) & 255, (n >>> 8) & 255, n & 255].join('.');
}

export interface Cidr {
  network: number;
  prefix: number;
  mask: number;
}

/** `a.b.c.d/n` with its network address masked; throws on anything else. */
export function parseCidr(cidr: string): Cidr {
  const m = /^(\d+\.\d+\.\d+\.\d+)\/(\d{1,2})$/.exec(cidr.trim());
  const prefix = m ? Number(m[2]) : NaN;
  const ip = m ? tryIpToInt(m[1]!) : null;
  if (ip === null || !(prefix >= 0 && prefix <= 32)) throw new Error(`not an IPv4 CIDR: ${cidr}`);
  const mask = prefix === 0 ? 0 : (0xffffffff << (32 - prefix)) >>> 0;
  return { network: (ip & mask) >>> 0, prefix, mask };
}
