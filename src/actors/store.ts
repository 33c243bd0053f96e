// Durable sandbox records: one JSON file per live sandbox under <stateDir>/records, written
// atomically (tmp + rename), so a gateway killed with SIGKILL can re-adopt its sandboxes.
// Writes for one id are serialized and coalesced: only the latest record matters.
// A write that fails (ENOSPC on a full state disk, EIO...) never throws into the sandbox's actor
// (that killed the actor while its container ran on): the record stays pending in memory and is
// retried until the disk takes it again; remove() drops a pending record.
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

export interface StoreLogger {
  warn(obj: object, msg: string): void;
  info(obj: object, msg: string): void;
}

const stderrLogger: StoreLogger = {
  warn: (o, msg) => process.stderr.write(JSON.stringify({ level: 40, svc: 'coppice', ...o, msg }) + '\n'),
  info: () => undefined,
};

const RETRY_MS = 1000;

export class SandboxStore {
  readonly dir: string;
  private readonly pending = new Map<string, SandboxRecord>();
  private retry: NodeJS.Timeout | undefined;
  private lastError: string | undefined;

  constructor(
    stateDir: string,
    private readonly log: StoreLogger = stderrLogger,
  ) {
    this.dir = join(stateDir, 'records');
    mkdirSync(this.dir, { recursive: true, mode: 0o700 });
  }

  /** Records not on disk yet (their write failed; retried every second). */
  get pendingCount(): number {
    return this.pending.size;
  }

  /**
   * Synchronous on purpose: a record is small, the write is one rename, and it must be on disk
   * before the reply that makes the sandbox visible to its caller (or a SIGKILL right after loses it).
   * Never throws: a failed write is kept and retried (see the file comment).
   */
  save(record: SandboxRecord): void {
    try {
      this.write(record);
      this.pending.delete(record.id);
    } catch (e) {
      this.pending.set(record.id, record);
      this.failed(record.id, e);
    }
  }

  remove(id: string): void {
    if (!ID.test(id)) return;
    this.pending.delete(id);
    try {
      rmSync(join(this.dir, `${id}.json`), { force: true });
      rmSync(join(this.dir, `${id}.json.tmp`), { force: true });
    } catch (e) {
      // An unremovable record is dropped as an orphan at the next start (reconcile.ts).
      this.log.warn({ sandbox: id, err: errText(e) }, 'sandbox record not removed');
    }
  }

  /** Stop retrying (the gateway is closing); pending records are lost, as after a SIGKILL. */
  close(): void {
    clearTimeout(this.retry);
    this.retry = undefined;
  }

  private write(record: SandboxRecord): void {
    const file = join(this.dir, `${record.id}.json`);
    try {
      writeFileSync(file + '.tmp', JSON.stringify(record), { mode: 0o600 });
      renameSync(file + '.tmp', file);
    } catch (e) {
      rmSync(file + '.tmp', { force: true }); // a half-written tmp file takes space too
      throw e;
    }
  }

  private failed(id: string, e: unknown): void {
    const err = errText(e);
    // One warning per distinct failure, not one per record per retry.
    if (err !== this.lastError) this.log.warn({ sandbox: id, err, pending: this.pending.size }, 'sandbox record not written; kept in memory, retrying');
    this.lastError = err;
    this.retry ??= setTimeout(() => this.flush(), RETRY_MS).unref();
  }

  private flush(): void {
    this.retry = undefined;
    for (const [id, record] of this.pending) {
      try {
        this.write(record);
        this.pending.delete(id);
      } catch (e) {
        this.failed(id, e);
        return;
      }
    }
    if (this.lastError !== undefined) this.log.info({}, 'sandbox records written again');
    this.lastError = undefined;
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

const errText = (e: unknown) => (e as NodeJS.ErrnoException)?.code ?? (e instanceof Error ? e.message : String(e));
