// Idmapped bind mounts through ops/idmap/coppice-idmap (runc 1.1 has no idmapped-mount support and
// util-linux 2.38's mount has no X-mount.idmap). The template directory stays owned by host uids
// 0..65535; each sandbox sees it through an idmapped view shifted onto its own range, so create
// costs one helper process and never copies or chowns the template.
import { mkdir, rmdir } from 'node:fs/promises';
import { RANGE } from './userns.ts';
import { run } from './run.ts';

export const DEFAULT_IDMAP_HELPER = '/usr/local/lib/coppice/coppice-idmap';

/** Mount `src` at `dst` so that a file owned by nsFirst+k appears owned by hostFirst+k. */
export async function bindIdmapped(helper: string, nsFirst: number, hostFirst: number, src: string, dst: string, signal?: AbortSignal): Promise<void> {
  await run(helper, [String(nsFirst), String(hostFirst), String(RANGE), src, dst], { signal });
}

/** Run `fn` with `src` visible at `view` (a fresh dir) shifted nsFirst -> hostFirst; always unmounted after. */
export async function withIdmappedView<T>(helper: string, nsFirst: number, hostFirst: number, src: string, view: string, fn: () => Promise<T>): Promise<T> {
  await mkdir(view);
  try {
    await bindIdmapped(helper, nsFirst, hostFirst, src, view);
    try {
      return await fn();
    } finally {
      await run('umount', [view]).catch(() => run('umount', ['-l', view]));
    }
  } finally {
    await rmdir(view).catch(() => undefined);
  }
}
