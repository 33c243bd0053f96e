// envd's filesystem.Filesystem, done inside the sandbox (see sandbox-fs.ts for why: symlinks
// resolve in the sandbox's own view, never on the host).
import type { ServiceImpl } from '@connectrpc/connect';
import { asConnectError } from './rpc-errors.ts';
import { timestampFromDate } from '@bufbuild/protobuf/wkt';
import type { Gateway } from '../actors/gateway.ts';
import { envdCall } from './context.ts';
import { FileType, Filesystem } from './gen/filesystem/filesystem_pb.ts';
import { listDir, makeDir, move, remove, stat, type FsEntry, type FsTarget } from './sandbox-fs.ts';
import { watchDir } from './watch.ts';
import { PolledWatchers } from './watchers.ts';

export function entryInfo(e: FsEntry) {
  return {
    name: e.name,
    type: e.type === 'dir' ? FileType.DIRECTORY : e.type === 'symlink' ? FileType.SYMLINK : FileType.FILE,
    path: e.path,
    size: BigInt(e.size),
    mode: e.mode,
    permissions: e.permissions,
    owner: e.owner,
    group: e.group,
    modifiedTime: timestampFromDate(e.modifiedTime),
    ...(e.symlinkTarget !== undefined ? { symlinkTarget: e.symlinkTarget } : {}),
  };
}

async function guard<T>(fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    throw asConnectError(err);
  }
}

export function filesystemService(gw: Gateway): Partial<ServiceImpl<typeof Filesystem>> {
  const target = (ctx: Parameters<typeof envdCall>[0]): FsTarget => {
    const c = envdCall(ctx);
    return { gw, sandboxId: c.sandboxId, user: c.user };
  };
  const watchers = new PolledWatchers();
  return {
    stat: (req, ctx) => guard(async () => ({ entry: entryInfo(await stat(target(ctx), req.path)) })),
    listDir: (req, ctx) => guard(async () => ({ entries: (await listDir(target(ctx), req.path, req.depth || 1)).map(entryInfo) })),
    makeDir: (req, ctx) => guard(async () => ({ entry: entryInfo(await makeDir(target(ctx), req.path)) })),
    move: (req, ctx) => guard(async () => ({ entry: entryInfo(await move(target(ctx), req.source, req.destination)) })),
    remove: (req, ctx) =>
      guard(async () => {
        await remove(target(ctx), req.path);
        return {};
      }),
    async *watchDir(req, ctx) {
      yield* watchDir(target(ctx), req, ctx.signal);
    },
    // The Python SDK's sync watch_dir: WatchDir consumed into a buffer that is polled (watchers.ts).
    createWatcher: async (req, ctx) => ({ watcherId: await watchers.create(target(ctx), req) }),
    getWatcherEvents: async (req, ctx) => ({ events: watchers.events(envdCall(ctx).sandboxId, req.watcherId) }),
    removeWatcher: async (req, ctx) => {
      watchers.remove(envdCall(ctx).sandboxId, req.watcherId);
      return {};
    },
  };
}
