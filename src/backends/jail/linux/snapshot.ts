// Snapshots on Linux are file copies of a sandbox's overlay upper layer (CRIU fails `criu check`
// on this kernel, so no memory). Layout: <stateDir>/snapshots/<snapshotID>/{upper/, meta.json}.
// The copy is `cp -a`: symlinks stay symlinks (never followed on the host), device nodes (overlay
// whiteouts), owners, modes and xattrs (overlay's opaque-dir markers) are kept.
import { existsSync } from 'node:fs';
import { mkdir, readdir, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { SnapshotRecord } from '../../types.ts';
import { withIdmappedView } from './idmap.ts';
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

/**
 * Write the snapshot of `upper` under its id; on any failure nothing of it is left. The files keep
 * the host owners of the sandbox's uid range; meta.json records its base (`uidBase`) so a sandbox
 * with another range can shift them when it is made from the snapshot (seedUpper).
 */
export async function writeSnapshot(stateDir: string, upper: string, input: Omit<SnapshotRecord, 'sizeBytes'> & { uidBase?: number }): Promise<SnapshotRecord> {
  const { uidBase = 0, ...record } = input;
  const p = snapshotPaths(stateDir, record.snapshotID);
  const tmp = snapshotPaths(stateDir, IN_PROGRESS + record.snapshotID);
  await mkdir(join(stateDir, 'snapshots'), { recursive: true, mode: 0o700 });
  await mkdir(tmp.dir, { mode: 0o700 });
  try {
    await mkdir(tmp.upper);
    await copyTree(upper, tmp.upper);
    const full: SnapshotRecord = { ...record, sizeBytes: await treeBytes(tmp.upper) };
    await writeFile(tmp.meta, JSON.stringify({ ...full, uidBase }));
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
    const { uidBase: _base, ...rec } = JSON.parse(await readFile(snapshotPaths(stateDir, snapshotID).meta, 'utf8')) as SnapshotRecord & { uidBase?: number };
    return rec;
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

async function snapshotUidBase(stateDir: string, snapshotID: string): Promise<number> {
  try {
    const base = (JSON.parse(await readFile(snapshotPaths(stateDir, snapshotID).meta, 'utf8')) as { uidBase?: unknown }).uidBase;
    return typeof base === 'number' && Number.isInteger(base) && base >= 0 ? base : 0;
  } catch {
    return 0;
  }
}

export interface SeedShift {
  /** The new sandbox's host uid base (0: no user namespace). */
  base: number;
  /** coppice-idmap (idmap.ts). */
  helper: string;
  /** A path that does not exist yet, inside the sandbox dir, for the shifted view. */
  scratch: string;
}

/**
 * Fill a new sandbox's upper dir from a snapshot: copied, or moved when it is used up (fork) and
 * already has the right owners on the same filesystem. Files taken in another uid range are copied
 * through an idmapped view (old range -> new range), so owners stay right inside (cp -a keeps
 * modes, setuid bits, xattrs; nothing is chowned in place).
 */
export async function seedUpper(stateDir: string, snapshotID: string, upper: string, consume: boolean, shift?: SeedShift): Promise<void> {
  const p = snapshotPaths(stateDir, snapshotID);
  const from = await snapshotUidBase(stateDir, snapshotID);
  const to = shift?.base ?? from;
  if (from !== to) {
    await withIdmappedView(shift!.helper, from, to, p.upper, shift!.scratch, () => copyTree(shift!.scratch, upper));
  } else if (consume) {
    try {
      await rm(upper, { recursive: true, force: true });
      await rename(p.upper, upper);
    } catch (e) {
      // The upper dir is on the sandbox's own disk image (quota.ts): another filesystem.
      if ((e as NodeJS.ErrnoException).code !== 'EXDEV') throw e;
      await mkdir(upper);
      await copyTree(p.upper, upper);
    }
  } else {
    await copyTree(p.upper, upper);
  }
  if (consume) await rm(p.dir, { recursive: true, force: true });
}
