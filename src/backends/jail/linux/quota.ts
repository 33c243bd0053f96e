// Disk quota per sandbox: the writable (upper) layer lives on its own sparse ext4 image,
// `<dir>/disk.img` of exactly diskMiB, loop-mounted at `<dir>/disk` (nosuid,nodev). The sandbox gets
// ENOSPC at its quota; the host loses at most diskMiB (the image is sparse and cannot grow beyond
// its size); other sandboxes are on other images. Chosen over one shared XFS image with project
// quotas: no host-wide image to size and recover, inodes are per sandbox too, cleanup is
// "unmount + delete a file", and mkfs of a 2 GiB image with lazy init costs ~10 ms here.
// ext4 metadata takes ~2-3% of the image, so slightly less than diskMiB is usable.
import { mkdir, open } from 'node:fs/promises';
import { run } from './run.ts';

export async function makeDisk(image: string, mountPoint: string, diskMiB: number, signal?: AbortSignal): Promise<void> {
  const fh = await open(image, 'wx', 0o600);
  try {
    await fh.truncate(diskMiB * 1024 * 1024);
  } finally {
    await fh.close();
  }
  await run('mkfs.ext4', ['-q', '-F', '-m', '0', '-O', '^has_journal', '-E', 'nodiscard,lazy_itable_init=1,lazy_journal_init=1', image], { signal });
  await mkdir(mountPoint, { recursive: true });
  // -o loop: the loop device is auto-cleared when the filesystem is unmounted (teardown's umount).
  await run('mount', ['-t', 'ext4', '-o', 'loop,nosuid,nodev,noatime', image, mountPoint], { signal });
}

/** Loop devices whose backing file is under `dir` (leak checks). */
export async function loopDevicesUnder(dir: string): Promise<string[]> {
  const r = await run('losetup', ['-n', '-O', 'NAME,BACK-FILE', '-l']).catch(() => null);
  if (!r) return [];
  return r.stdout
    .split('\n')
    .map((l) => l.trim().split(/\s+/))
    .filter((f) => f.length >= 2 && (f[1] === dir || f[1]!.startsWith(dir + '/')))
    .map((f) => `loop ${f[0]} (${f[1]})`);
}
