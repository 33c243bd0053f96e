// IPv4 address allocation for sandboxes on one routed subnet (DESIGN.md "jail / linux": 10.78.0.0/24).
// The first host address is the gateway every sandbox routes through (assigned to each host-side
// veth as a /32), so it is never handed out; neither are the network and broadcast addresses.
// Pure and synchronous: allocation cannot interleave, so concurrent creates never share an address.
import { CoppiceError } from '../../errors.ts';
import { intToIp, ipToInt, parseCidr as parseIpv4Cidr } from '../ipv4.ts';

export interface ParsedCidr {
  /** Network address as an unsigned 32-bit integer. */
  network: number;
  prefix: number;
}

export { intToIp, ipToInt };

export function parseCidr(cidr: string): ParsedCidr {
  const { network, prefix } = parseIpv4Cidr(cidr);
  // /31 and /32 leave no room for a gateway plus a sandbox.
  if (prefix < 8 || prefix > 30) throw new Error(`CIDR prefix must be 8..30: ${cidr}`);
  return { network, prefix };
}

export class AddressPool {
  readonly prefix: number;
  /** The gateway address (first host address of the subnet). */
  readonly gateway: string;
  private readonly first: number;
  private readonly last: number;
  private readonly live = new Set<number>();
  /** Round-robin cursor: recently released addresses are reused last, so stale ARP/conntrack entries age out. */
  private cursor: number;

  constructor(cidr = '10.78.0.0/24') {
    const { network, prefix } = parseCidr(cidr);
    this.prefix = prefix;
    const size = 2 ** (32 - prefix);
    this.gateway = intToIp(network + 1);
    this.first = network + 2;
    this.last = network + size - 2; // skip broadcast
    this.cursor = this.first;
  }

  /** Number of addresses this pool can hand out in total. */
  get capacity(): number {
    return this.last - this.first + 1;
  }

  get inUse(): number {
    return this.live.size;
  }

  /** Hand out a free address. Throws `too_many_requests` when the subnet is full (retryable once sandboxes go). */
  allocate(): string {
    const cap = this.capacity;
    for (let i = 0; i < cap; i++) {
      const n = this.first + ((this.cursor - this.first + i) % cap);
      if (!this.live.has(n)) {
        this.live.add(n);
        this.cursor = n + 1 > this.last ? this.first : n + 1;
        return intToIp(n);
      }
    }
    throw new CoppiceError(
      'too_many_requests',
      `no free sandbox address: all ${cap} addresses of ${intToIp(this.first - 2)}/${this.prefix} are in use`,
    );
  }

  /** Mark a specific address as live (re-adoption of a sandbox found after a restart). */
  claim(ip: string): void {
    const n = this.toMember(ip);
    if (this.live.has(n)) throw new CoppiceError('conflict', `address ${ip} is already in use`);
    this.live.add(n);
  }

  /** Return an address. Releasing an address that is not live is a no-op (destroy is idempotent). */
  release(ip: string): void {
    let n: number;
    try {
      n = this.toMember(ip);
    } catch {
      return;
    }
    this.live.delete(n);
  }

  isLive(ip: string): boolean {
    try {
      return this.live.has(this.toMember(ip));
    } catch {
      return false;
    }
  }

  private toMember(ip: string): number {
    const n = ipToInt(ip);
    if (n < this.first || n > this.last) {
      throw new CoppiceError('bad_request', `address ${ip} is not a sandbox address of this pool`);
    }
    return n;
  }
}
