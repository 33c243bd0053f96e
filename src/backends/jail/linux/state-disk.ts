// The gateway's own state disk (records, sandbox dirs, disk images, snapshots). When it is full a
// create cannot succeed: it is refused up front with 507 insufficient_storage instead of failing
// halfway (mkfs, config.json) with a 502, and ENOSPC from any step is reported the same way.
import { statfsSync } from 'node:fs';
import { CoppiceError, insufficientStorage } from '../../../errors.ts';

/**
 * Free space a create needs on the state disk before it starts: the ext4 metadata mkfs writes into
 * the (sparse) image of a small quota, config.json, logs, and room for the records that follow.
 */
export const CREATE_MIN_FREE = 8 * 1024 * 1024;

/** Bytes an unprivileged writer could still put on the filesystem holding `dir`. */
export function freeBytes(dir: string): number {
  const s = statfsSync(dir);
  return Number(s.bavail) * Number(s.bsize);
}

export function assertStateSpace(dir: string, need = CREATE_MIN_FREE): void {
  let free: number;
  try {
    free = freeBytes(dir);
  } catch {
    return; // cannot tell: let the create try (and fail with the real error if it must)
  }
  if (free < need) {
    throw insufficientStorage(`the gateway's state disk is full (${Math.floor(free / 1024)} KiB free in ${dir}, ${need / 1024 / 1024} MiB needed): no new sandbox until space returns`);
  }
}

/** ENOSPC/EDQUOT, as an errno or in a tool's message (mkfs, runc, cp). */
export function isNoSpace(e: unknown): boolean {
  if (e instanceof CoppiceError && e.code === 'insufficient_storage') return true;
  const code = (e as NodeJS.ErrnoException)?.code;
  if (code === 'ENOSPC' || code === 'EDQUOT') return true;
  const text = e instanceof Error ? `${e.message} ${(e as { stderr?: string }).stderr ?? ''}` : String(e);
  return /no space left on device|disk quota exceeded/i.test(text);
}
