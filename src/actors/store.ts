// Durable sandbox records: one JSON file per live sandbox under <stateDir>/records, written
// atomically (tmp + rename), so a gateway killed with SIGKILL can re-adopt its sandboxes.
// Writes for one id are serialized and coalesced: only the latest record matters.
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import type { SandboxHandle } from '../backends/types.ts';
import type { Limits } from '../../machines/types.ts';

export interface SandboxRecord {
  id: string;
  template: string;
  backend: string;
  ip: string;
  limits: Limits;
  metadata: Record<string, string>;
  envVars: Record<string, string>;
  internet: boolean;
  createdAt: number;
  startedAt: number;
  endAt: number;
  timeoutMs: number;
  handle: SandboxHandle;
}

const ID = /^[a-z0-9]{10}$/;

export class SandboxStore {
  readonly dir: string;

  constructor(stateDir: string) {
    this.dir = join(stateDir, 'records');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /**
   * Synchronous on purpose: a record is small, the write is one rename, and it must be on disk
   * before the reply that makes the sandbox visible to its caller (or a SIGKILL right after loses it).
   */
  save(record: SandboxRecord): void {
    const file = join(this.dir, `${record.id}.json`);
    writeFileSync(file + '.tmp', JSON.stringify(record), { mode: 0o600 });
    renameSync(file + '.tmp', file);
  }

  remove(id: string): void {
    if (!ID.test(id)) return;
    rmSync(join(this.dir, `${id}.json`), { force: true });
    rmSync(join(this.dir, `${id}.json.tmp`), { force: true });
  }

  /** Every readable record; unreadable or half-written files are reported and skipped. */
  loadAll(): { records: SandboxRecord[]; broken: string[] } {
    const records: SandboxRecord[] = [];
    const broken: string[] = [];
    for (const name of readdirSync(this.dir)) {
      const file = join(this.dir, name);
      if (name.endsWith('.tmp')) {
        rmSync(file, { force: true });
        continue;
      }
      try {
        const r = JSON.parse(readFileSync(file, 'utf8')) as SandboxRecord;
        if (!ID.test(r.id) || `${r.id}.json` !== name || !r.handle) throw new Error('not a sandbox record');
        records.push(r);
      } catch {
        broken.push(name);
        rmSync(file, { force: true });
      }
    }
    return { records, broken };
  }
}
