// One RawRunc per module: its own root dir (recorded in the manifest) and its own free /24.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ensureNetnsDir } from '../../src/backends/jail/linux/network.ts';
import { onCleanup, record, removeDirSafely } from './cleanup.ts';
import { freeSubnet, range } from './host.ts';
import { RawRunc, rawIds, removeCgroupParents } from './raw-runc.ts';

export async function startRaw(): Promise<{ raw: RawRunc; subnet: string; close(): Promise<string[]> }> {
  await ensureNetnsDir();
  const root = mkdtempSync(join(tmpdir(), 'coppice-bench-raw-'));
  const unrecord = record({ kind: 'raw-root', dir: root });
  const subnet = freeSubnet(range(220, 239, (i) => `10.78.${i}.0/24`));
  const raw = new RawRunc({ root, subnet });
  let closed = false;
  const close = async () => {
    if (closed) return [];
    closed = true;
    const left: string[] = [];
    for (const id of rawIds(root)) left.push(...(await raw.destroy(id)));
    await removeCgroupParents();
    left.push(...removeDirSafely(root));
    if (left.length === 0) unrecord();
    return left;
  };
  const unregister = onCleanup(`raw root ${root}`, async () => {
    const left = await close();
    if (left.length) throw new Error(`raw leftovers: ${left.join(', ')}`);
  });
  return {
    raw,
    subnet,
    close: async () => {
      unregister();
      return close();
    },
  };
}
