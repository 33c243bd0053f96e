// Removing what one FreeBSD jail sandbox owns (destroy), and reaping datasets kept alive by
// snapshots. Every step tolerates "already gone" and teardown never throws: it returns what it
// could not remove. UNTESTED ON REAL FREEBSD.
//
// Why destroy is not a plain `zfs destroy -r`: snapshots are API objects that outlive their sandbox
// (GET/DELETE /snapshots), and a fork is a clone of one. `-r` would delete snapshots the API still
// lists, and refuses outright ("dependent clones") once a fork exists. So a sandbox that still has
// snapshots is RETIRED instead: unmounted, `canmount=noauto`, `coppice:retired=on`. Its snapshots
// keep working; deleting the last one (or destroying the last fork of a deferred-deleted one)
// reaps it.
import { GONE, jail, net, rctl, zfs } from './commands.ts';
import { parseSnapshotDataset, type FreebsdNames, type Layout } from './names.ts';
import { parseNames } from './parse.ts';
import { CommandFailed, check, removeTolerant, type CommandRunner } from './runner.ts';

const msg = (e: unknown) => (e instanceof Error ? e.message : String(e));

export interface TeardownResult {
  /** What is still there, for the log. */
  left: string[];
  /** False when `jail -r` failed: the jail may still hold its address, which must stay quarantined. */
  jailGone: boolean;
  /** The dataset was kept (retired) because snapshots of it exist. */
  retired: boolean;
}

/** Destroy the dataset, or retire it when it has snapshots. Returns true when retired. */
export async function removeDataset(runner: CommandRunner, dataset: string): Promise<boolean> {
  const argv = zfs.snapshotsOf(dataset);
  const res = await runner.run(argv);
  if (res.code !== 0) {
    if (GONE.zfs.test(res.stderr)) return false;
    throw new CommandFailed(argv, res);
  }
  if (parseNames(res.stdout).length === 0) {
    await removeTolerant(runner, zfs.destroy(dataset), GONE.zfs);
    return false;
  }
  await check(runner, zfs.retire(dataset));
  await removeTolerant(runner, zfs.unmount(dataset), GONE.unmount);
  return true;
}

/**
 * rctl rules first (a maxproc deny can block the jail's shutdown), then the jail (kills its
 * processes, stopped ones included, and returns cpc<id>b to the host), then the epair (both ends),
 * then the dataset. `settle` runs between jail and epair: pot waits ~1 s there to dodge an epair race.
 */
export async function teardown(runner: CommandRunner, n: FreebsdNames, settle: () => Promise<void>): Promise<TeardownResult> {
  const left: string[] = [];
  const attempt = async (what: string, fn: () => Promise<unknown>): Promise<boolean> => {
    try {
      await fn();
      return true;
    } catch (e) {
      left.push(`${what} (${msg(e)})`);
      return false;
    }
  };
  await attempt(`rctl rules of ${n.jail}`, () => removeTolerant(runner, rctl.remove(n), GONE.rctl));
  const jailGone = await attempt(`jail ${n.jail}`, () => removeTolerant(runner, jail.remove(n), GONE.jail));
  await settle();
  await attempt(`interface ${n.ifA}`, () => removeTolerant(runner, net.destroy(n.ifA), GONE.ifconfig));
  let retired = false;
  await attempt(`dataset ${n.dataset}`, async () => {
    retired = await removeDataset(runner, n.dataset);
  });
  return { left, jailGone, retired };
}

/**
 * Destroy `dataset` if it is retired and nothing depends on it any more, then do the same for the
 * sandbox its origin snapshot belongs to (destroying the last clone of a deferred-deleted snapshot
 * makes ZFS drop that snapshot, which may free its retired parent). Returns what was reaped.
 * Never throws: a retired dataset that still has snapshots or clones is simply left for later.
 */
export async function reapRetired(runner: CommandRunner, layout: Layout, dataset: string, depth = 0): Promise<string[]> {
  const res = await runner.run(zfs.retiredAndOrigin(dataset));
  if (res.code !== 0) return [];
  const [retired, origin] = parseNames(res.stdout);
  if (retired !== 'on') return [];
  const del = await runner.run(zfs.destroy(dataset));
  if (del.code !== 0) return [];
  const parent = origin ? parseSnapshotDataset(layout, origin) : null;
  if (!parent || depth >= 32) return [dataset];
  return [dataset, ...(await reapRetired(runner, layout, `${layout.root}/sandboxes/${parent.sandboxId}`, depth + 1))];
}
