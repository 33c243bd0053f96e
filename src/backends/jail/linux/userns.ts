// Per-sandbox user namespaces: every sandbox gets its own range of RANGE host uids/gids (sandbox
// uid k = host uid base + k), so sandbox root is an unprivileged host uid and no two sandboxes
// share per-uid kernel state (keyrings, inotify instances, rlimits). Ranges come from
// `firstBase + slot * RANGE`, are never shared by two live sandboxes, are returned on destroy and
// recovered after a gateway restart from the live containers' /proc/<init>/uid_map.
import { readFileSync } from 'node:fs';

export const RANGE = 65_536;
const MAX_ID = 4_294_967_294;

export class UidRanges {
  private readonly byId = new Map<string, number>();
  private readonly used = new Set<number>();

  constructor(readonly firstBase: number) {
    if (!Number.isInteger(firstBase) || firstBase < RANGE || firstBase + RANGE > MAX_ID) {
      throw new Error(`uid base ${firstBase} must be an integer in [${RANGE}, ${MAX_ID - RANGE}]`);
    }
  }

  get slots(): number {
    return Math.floor((MAX_ID + 1 - this.firstBase) / RANGE);
  }

  /** The host base uid of a new sandbox's range (lowest free slot). */
  allocate(id: string): number {
    const have = this.byId.get(id);
    if (have !== undefined) return have;
    for (let s = 0; s < this.slots; s++) {
      const base = this.firstBase + s * RANGE;
      if (!this.used.has(base)) {
        this.used.add(base);
        this.byId.set(id, base);
        return base;
      }
    }
    throw new Error('no free uid range left');
  }

  /** Reserve the range a live sandbox already uses (re-adoption); throws if another sandbox has it. */
  claim(id: string, base: number): void {
    if (this.byId.get(id) === base) return;
    if ((base - this.firstBase) % RANGE !== 0 || base < this.firstBase) throw new Error(`uid base ${base} is not a range of this gateway (first ${this.firstBase})`);
    if (this.used.has(base)) throw new Error(`uid range ${base} is already in use by another sandbox`);
    this.used.add(base);
    this.byId.set(id, base);
  }

  release(id: string): void {
    const base = this.byId.get(id);
    if (base === undefined) return;
    this.used.delete(base);
    this.byId.delete(id);
  }

  baseOf(id: string): number | undefined {
    return this.byId.get(id);
  }

  get size(): number {
    return this.byId.size;
  }
}

/** Host base uid of a process's user namespace if it maps uid 0 (the first line of uid_map). */
export function parseUidMap(text: string): { base: number; size: number } | null {
  const first = text.trim().split('\n')[0]?.trim().split(/\s+/).map(Number);
  if (!first || first.length !== 3 || first.some((v) => !Number.isInteger(v)) || first[0] !== 0) return null;
  return { base: first[1]!, size: first[2]! };
}

export function readUidBase(pid: number): number | null {
  try {
    const m = parseUidMap(readFileSync(`/proc/${pid}/uid_map`, 'utf8'));
    return m && m.base !== 0 ? m.base : null;
  } catch {
    return null;
  }
}
