// Snapshots of FreeBSD jail sandboxes: `zfs snapshot <root>/sandboxes/<id>@<snapshotID>` taken
// while every process of the jail is SIGSTOPped (files only: ZFS carries no memory). The API's
// record (template, createdAt) rides on the snapshot as user properties, so GET /snapshots is one
// `zfs list` and survives gateway restarts. A sandbox made from a snapshot is a `zfs clone` of it
// (create.ts). Deleting is a deferred `zfs destroy -d`: a snapshot that clones still depend on
// vanishes from the list at once (defer_destroy=on) and from the pool with its last clone.
// UNTESTED ON REAL FREEBSD.
import { conflict } from '../../../errors.ts';
import type { SnapshotRecord } from '../../types.ts';
import { SNAPSHOT_COLUMNS, GONE, zfs } from './commands.ts';
import { continueAll, stopAll, type FreezeOptions } from './freeze.ts';
import { assertSnapshotId, parseSnapshotDataset, snapshotDataset, type FreebsdNames, type Layout } from './names.ts';
import { parseNames } from './parse.ts';
import { CommandFailed, check, type CommandRunner } from './runner.ts';
import { reapRetired } from './teardown.ts';

export interface SnapshotRow extends SnapshotRecord {
  /** `<root>/sandboxes/<sandboxID>@<snapshotID>`: what a create from this snapshot clones. */
  dataset: string;
  /** Deleted through the API but still cloned by a sandbox (hidden from the list). */
  deferred: boolean;
}

/** Rows of `zfs list -H -p -o <SNAPSHOT_COLUMNS>`; lines that are not our snapshots are skipped. */
export function parseSnapshotList(layout: Layout, stdout: string): SnapshotRow[] {
  const rows: SnapshotRow[] = [];
  for (const line of parseNames(stdout)) {
    const f = line.split('\t');
    if (f.length !== SNAPSHOT_COLUMNS.length) continue;
    const [dataset, deferred, template, created, referenced] = f;
    const ids = parseSnapshotDataset(layout, dataset);
    if (!ids || template === '-' || created === '-') continue; // not made by this driver
    rows.push({
      snapshotID: ids.snapshotId,
      sandboxID: ids.sandboxId,
      template,
      backend: 'jail',
      createdAt: created,
      sizeBytes: /^\d+$/.test(referenced) ? Number(referenced) : 0,
      dataset,
      deferred: deferred === 'on',
    });
  }
  return rows;
}

/** All live snapshots (deferred-deleted ones excluded), oldest first. */
export async function listSnapshotRows(runner: CommandRunner, layout: Layout): Promise<SnapshotRow[]> {
  const argv = zfs.allSnapshots(layout.root);
  const res = await runner.run(argv);
  if (res.code !== 0) {
    if (GONE.zfs.test(res.stderr)) return []; // no <root>/sandboxes yet
    throw new CommandFailed(argv, res);
  }
  return parseSnapshotList(layout, res.stdout)
    .filter((r) => !r.deferred)
    .sort((a, b) => a.createdAt.localeCompare(b.createdAt));
}

export async function findSnapshot(runner: CommandRunner, layout: Layout, snapshotID: string): Promise<SnapshotRow | null> {
  assertSnapshotId(snapshotID);
  const found = (await listSnapshotRows(runner, layout)).filter((r) => r.snapshotID === snapshotID);
  if (found.length > 1) throw conflict(`snapshot id ${snapshotID} is ambiguous: ${found.map((r) => r.dataset).join(', ')}`);
  return found[0] ?? null;
}

export const toRecord = ({ dataset: _d, deferred: _x, ...rec }: SnapshotRow): SnapshotRecord => rec;

export interface TakeSnapshotInput {
  runner: CommandRunner;
  layout: Layout;
  names: FreebsdNames;
  jid: number;
  snapshotID: string;
  template: string;
  createdAt: string;
  /** The sandbox is paused already: snapshot it as it is and leave it paused. */
  alreadyStopped: boolean;
  freeze: FreezeOptions;
}

/** Stop, snapshot, continue (the processes are continued even when the snapshot fails), then read its size. */
export async function takeSnapshot(i: TakeSnapshotInput): Promise<SnapshotRecord> {
  assertSnapshotId(i.snapshotID);
  const name = snapshotDataset(i.layout, i.names.id, i.snapshotID);
  const argv = zfs.snapshot(name, i.template, i.createdAt);
  if (i.alreadyStopped) {
    await check(i.runner, argv);
  } else {
    await stopAll(i.runner, i.jid, i.freeze);
    try {
      await check(i.runner, argv);
    } finally {
      await continueAll(i.runner, i.jid);
    }
  }
  const size = await i.runner.run(zfs.referenced(name));
  const sizeBytes = size.code === 0 && /^\d+$/.test(size.stdout.trim()) ? Number(size.stdout.trim()) : 0;
  return { snapshotID: i.snapshotID, sandboxID: i.names.id, template: i.template, backend: 'jail', createdAt: i.createdAt, sizeBytes };
}

/**
 * Deferred destroy, then reap the source's dataset if it was retired and is now free. Idempotent
 * (like the Linux driver's): an unknown or already deleted id is a no-op, the gateway answers 404.
 */
export async function deleteSnapshot(runner: CommandRunner, layout: Layout, snapshotID: string): Promise<{ dataset: string | null; reaped: string[] }> {
  const row = await findSnapshot(runner, layout, snapshotID);
  if (!row) return { dataset: null, reaped: [] };
  await check(runner, zfs.destroyDeferred(row.dataset));
  const parent = row.dataset.slice(0, row.dataset.indexOf('@'));
  return { dataset: row.dataset, reaped: await reapRetired(runner, layout, parent) };
}
