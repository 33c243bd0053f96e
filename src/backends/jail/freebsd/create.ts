// The create sequence shared by create (clone of a template) and forkFrom (clone of a sandbox
// snapshot). Each step registers its undo as soon as it may have left something behind, so a
// failure rolls back exactly what was done, in reverse order. UNTESTED ON REAL FREEBSD.
import { conflict } from '../../../errors.ts';
import type { Limits } from '../../types.ts';
import type { AddressPool } from '../address-pool.ts';
import type { UndoStack } from '../linux/undo.ts';
import { GONE, inside, jail, net, rctl, zfs, type JailParams } from './commands.ts';
import type { FreebsdNames } from './names.ts';
import { parseEpairCreate, parseJid } from './parse.ts';
import { CommandFailed, check, removeTolerant, type CommandRunner } from './runner.ts';

/** Steps of create, in order; the failing one is named in the error. */
export type CreateStep = 'address' | 'clone' | 'epair' | 'bridge' | 'jail' | 'network' | 'limits';

export interface CreateContext {
  runner: CommandRunner;
  pool: AddressPool;
  bridge: string;
  jailParams: JailParams;
}

export interface Created {
  ip: string;
  jid: number;
}

const ALREADY_EXISTS = /already exists/i;

export async function createSteps(
  ctx: CreateContext,
  n: FreebsdNames,
  origin: string,
  limits: Limits,
  undo: UndoStack,
  at: (step: CreateStep) => void,
  signal?: AbortSignal,
): Promise<Created> {
  const { runner, pool } = ctx;
  const run = (argv: string[]) => check(runner, argv, { signal });

  /**
   * A creating command whose failure may still have made something (zfs clone can create the
   * dataset and then fail to mount it): push the undo unless it failed because the object
   * already existed, which means it is somebody else's and must not be rolled back.
   */
  const make = async (argv: string[], step: CreateStep, undoFn: () => Promise<unknown>) => {
    const res = await runner.run(argv, { signal });
    if (res.code !== 0 && ALREADY_EXISTS.test(res.stderr)) {
      throw conflict(`sandbox ${n.id} already exists on this host (${argv.join(' ')}: ${res.stderr.trim()})`);
    }
    undo.push(step, async () => void (await undoFn()));
    if (res.code !== 0) throw new CommandFailed(argv, res);
    return res;
  };

  at('address');
  const ip = pool.allocate();
  let quarantine = false; // set when the jail (and the address inside it) could not be removed
  undo.push('address', () => {
    if (quarantine) throw new Error(`address ${ip} quarantined: jail ${n.jail} may still hold it`);
    pool.release(ip);
  });

  at('clone');
  await make(zfs.clone(origin, n), 'clone', () => removeTolerant(runner, zfs.destroyRecursive(n.dataset), GONE.zfs));

  at('epair');
  const pair = parseEpairCreate((await run(net.epairCreate())).stdout);
  let hostEnd = pair.a; // the undo destroys whichever name the A end has by then
  undo.push('epair', async () => void (await removeTolerant(runner, net.destroy(hostEnd), GONE.ifconfig)));
  await run(net.rename(pair.a, n.ifA));
  hostEnd = n.ifA;
  await run(net.rename(pair.b, n.ifB));

  at('bridge');
  await run(net.bridgeAdd(ctx.bridge, n));
  await run(net.isolate(ctx.bridge, n)); // before the port comes up: no window where it is not private
  await run(net.up(n));

  at('jail');
  const created = await make(jail.create(n, ctx.jailParams), 'jail', async () => {
    try {
      await removeTolerant(runner, jail.remove(n), GONE.jail);
    } catch (e) {
      quarantine = true;
      throw e;
    }
  });
  const jid = parseJid(created.stdout);

  at('network');
  await run(inside.loopback(n));
  await run(inside.address(n, ip, pool.prefix));
  await run(inside.route(n, pool.gateway));

  at('limits');
  undo.push('limits', async () => void (await removeTolerant(runner, rctl.remove(n), GONE.rctl)));
  for (const argv of rctl.add(n, limits)) await run(argv);

  return { ip, jid };
}
