// Snapshots on Linux are file copies of a sandbox's overlay upper layer (CRIU fails `criu check`
// on this kernel, so no memory). Layout: <stateDir>/snapshots/<snapshotID>/{upper/, meta.json}.
// The copy is `cp -a`: symlinks stay symlinks (never followed on the host), device nodes (overlay
// whiteouts), owners, modes and xattrs (overlay's opaque-dir markers) are kept.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SnapshotRecord } from '../../types.ts';
import { run } from './run.ts';

export const SNAPSHOT_ID = /^snap-[a-z0-9]{10}$/;

export interface SnapshotPaths {
  dir: string;
  upper: string;
  meta: string;
}

export function snapshotPaths(stateDir: string, snapshotID: string): SnapshotPaths {
  const dir = join(stateDir, 'snapshots', snapshotID);
  return { dir, upper: join(dir, 'upper'), meta: join(dir, 'meta.json') };
}

/** Copy the contents of `src` into the (existing, empty) directory `dst`. */
export async function copyTree(src: string, dst: string, signal?: AbortSignal): Promise<void> {
  await run('cp', ['-a', '--reflink=auto', `${src}/.`, dst], { signal });
}

export async function treeBytes(dir: string): Promise<number> {
  const r = await run('du', ['-s', '-B1', '--apparent-size', dir]).catch(() => null);
  return r ? Number(r.stdout.split(/\s/)[0]) || 0 : 0;
}

/** Copies in progress live under a dot-name and are renamed into place when complete. */
const IN_PROGRESS = '.partial-';

/** Write the snapshot of `upper` under its id; on any failure nothing of it is left. */
export async function writeSnapshot(stateDir: string, upper: string, record: Omit<SnapshotRecord, 'sizeBytes'>): Promise<SnapshotRecord> {
  const p = snapshotPaths(stateDir, record.snapshotID);
  const tmp = snapshotPaths(stateDir, IN_PROGRESS + record.snapshotID);
  await mkdir(join(stateDir, 'snapshots'), { recursive: true, mode: 0o700 });
  await mkdir(tmp.dir, { mode: 0o700 });
  try {
    await mkdir(tmp.upper);
    await copyTree(upper, tmp.upper);
    const full: SnapshotRecord = { ...record, sizeBytes: await treeBytes(tmp.upper) };
    await writeFile(tmp.meta, JSON.stringify(full));
    // Visible only once complete: a listing never sees (nor removes) a copy in progress.
    await rename(tmp.dir, p.dir);
    return full;
  } catch (err) {
    await rm(tmp.dir, { recursive: true, force: true });
    throw err;
  }
}

/** At backend start no copy can be in progress: remove what a crash left mid-copy. */
export async function removePartialSnapshots(stateDir: string): Promise<void> {
  const root = join(stateDir, 'snapshots');
  if (!existsSync(root)) return;
  for (const name of await readdir(root)) {
    if (name.startsWith(IN_PROGRESS)) await rm(join(root, name), { recursive: true, force: true });
  }
}

export async function readSnapshot(stateDir: string, snapshotID: string): Promise<SnapshotRecord | null> {
  if (!SNAPSHOT_ID.test(snapshotID)) return null;
  try {
    return JSON.parse(await readFile(snapshotPaths(stateDir, snapshotID).meta, 'utf8')) as SnapshotRecord;
  } catch {
    return null;
  }
}

export async function listSnapshots(stateDir: string): Promise<SnapshotRecord[]> {
  const root = join(stateDir, 'snapshots');
  if (!existsSync(root)) return [];
  const out: SnapshotRecord[] = [];
  for (const id of await readdir(root)) {
    const rec = await readSnapshot(stateDir, id);
    if (rec) out.push(rec);
  }
  return out.sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

export async function deleteSnapshot(stateDir: string, snapshotID: string): Promise<void> {
  if (!SNAPSHOT_ID.test(snapshotID)) return;
  await rm(snapshotPaths(stateDir, snapshotID).dir, { recursive: true, force: true });
}

/** Fill a new sandbox's empty upper dir from a snapshot: copied, or moved when it is used up (fork). */
export async function seedUpper(stateDir: string, snapshotID: string, upper: string, consume: boolean): Promise<void> {
  const p = snapshotPaths(stateDir, snapshotID);
  if (consume) {
    await rm(upper, { recursive: true, force: true });
    await rename(p.upper, upper);
    await rm(p.dir, { recursive: true, force: true });
  } else {
    await copyTree(p.upper, upper);
  }
}
