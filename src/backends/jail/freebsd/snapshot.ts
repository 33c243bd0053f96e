// Snapshots of FreeBSD jail sandboxes: `zfs snapshot <root>/sandboxes/<id>@<snapshotId>` taken
// while every process of the jail is SIGSTOPped (files only: ZFS carries no memory). A fork is a
// `zfs clone` of it (create.ts); deleting it is a deferred `zfs destroy -d`, so a snapshot that
// forks still depend on disappears from the API at once and from the pool with its last fork.
// UNTESTED ON REAL FREEBSD.
import { conflict, notFound } from '../../../errors.ts';
import type { BackendKind } from '../../types.ts';
import { zfs } from './commands.ts';
import { continueAll, stopAll, type FreezeOptions } from './freeze.ts';
import { assertSnapshotId, parseSnapshotDataset, snapshotDataset, type FreebsdNames, type Layout } from './names.ts';
import { parseNames } from './parse.ts';
import { check, type CommandRunner } from './runner.ts';
import { reapRetired } from './teardown.ts';

/** What snapshot() returns and forkFrom() takes; `data` is backend-private, like SandboxHandle.data. */
export interface SnapshotInfo {
  /** The API's snapshotID. */
  id: string;
  /** The sandbox it was taken from (may be destroyed since). */
  sandboxId: string;
  /** Template name of the source: forks are registered under it. */
  template: string;
  backend: BackendKind;
  /** ISO 8601. */
  createdAt: string;
  /** FreeBSD: `{ dataset: '<root>/sandboxes/<id>@<snapshotId>' }`. */
  data: Record<string, unknown>;
}

export interface TakeSnapshotInput {
  runner: CommandRunner;
  layout: Layout;
  names: FreebsdNames;
  jid: number;
  snapshotId: string;
  /** The sandbox is paused already: take the snapshot as is and leave it paused. */
  alreadyStopped: boolean;
  freeze: FreezeOptions;
}

/** Stop, snapshot, continue. The processes are continued even when the snapshot fails. */
export async function takeSnapshot(i: TakeSnapshotInput): Promise<string> {
  assertSnapshotId(i.snapshotId);
  const name = snapshotDataset(i.layout, i.names.id, i.snapshotId);
  if (i.alreadyStopped) {
    await check(i.runner, zfs.snapshot(name));
    return name;
  }
  await stopAll(i.runner, i.jid, i.freeze);
  try {
    await check(i.runner, zfs.snapshot(name));
  } finally {
    await continueAll(i.runner, i.jid);
  }
  return name;
}

/** The dataset name of live (not deferred-deleted) snapshot `id`, from one `zfs list`. */
export async function findSnapshot(runner: CommandRunner, layout: Layout, id: string): Promise<string> {
  assertSnapshotId(id);
  const { stdout } = await check(runner, zfs.allSnapshots(layout.root));
  const found = parseNames(stdout)
    .map((line) => line.split('\t'))
    .filter(([name, deferred]) => deferred !== 'on' && parseSnapshotDataset(layout, name ?? '')?.snapshotId === id)
    .map(([name]) => name);
  if (found.length === 0) throw notFound(`snapshot ${id}`);
  if (found.length > 1) throw conflict(`snapshot id ${id} is ambiguous: ${found.join(', ')}`);
  return found[0];
}

/** Deferred destroy, then reap the source sandbox's dataset if it was retired and is now free. */
export async function deleteSnapshot(runner: CommandRunner, layout: Layout, id: string): Promise<{ dataset: string; reaped: string[] }> {
  const dataset = await findSnapshot(runner, layout, id);
  await check(runner, zfs.destroyDeferred(dataset));
  const parent = dataset.slice(0, dataset.indexOf('@'));
  return { dataset, reaped: await reapRetired(runner, layout, parent) };
}
