// Disk quota per sandbox: the writable (upper) layer lives on its own sparse ext4 image,
// `<dir>/disk.img` of exactly diskMiB, loop-mounted at `<dir>/disk` (nosuid,nodev). The sandbox gets
// ENOSPC at its quota; the host loses at most diskMiB (the image is sparse and cannot grow beyond
// its size); other sandboxes are on other images. Chosen over one shared XFS image with project
// quotas: no host-wide image to size and recover, inodes are per sandbox too, cleanup is
// "unmount + delete a file", and mkfs of a 2 GiB image with lazy init costs ~10 ms here.
// ext4 metadata takes ~2-3% of the image, so slightly less than diskMiB is usable.
import { readdirSync, readFileSync } from 'node:fs';
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

export interface LoopDevice {
  device: string;
  /** The image path, even after it was deleted (losetup then appends " (deleted)"). */
  backingFile: string;
}

/**
 * Every loop device with a backing file at or under `dir` (an image whose mount is gone keeps one).
 * Read from sysfs, not `losetup -l`: destroy calls this, and a spawn would cost it milliseconds.
 */
export async function loopsUnder(dir: string): Promise<LoopDevice[]> {
  const found: LoopDevice[] = [];
  let devs: string[];
  try {
    devs = readdirSync('/sys/block').filter((d) => /^loop\d+$/.test(d));
  } catch {
    return [];
  }
  for (const d of devs) {
    let file: string;
    try {
      file = readFileSync(`/sys/block/${d}/loop/backing_file`, 'utf8').trim().replace(/ \(deleted\)$/, '');
    } catch {
      continue; // not attached
    }
    if (file === dir || file.startsWith(dir + '/')) found.push({ device: `/dev/${d}`, backingFile: file });
  }
  return found;
}

/** Loop devices whose backing file is under `dir` (leak checks). */
export async function loopDevicesUnder(dir: string): Promise<string[]> {
  return (await loopsUnder(dir)).map((l) => `loop ${l.device} (${l.backingFile})`);
}

/** Detach the loop devices of images under `dir` (after their mounts are gone); returns what is left. */
export async function detachLoopsUnder(dir: string): Promise<string[]> {
  for (const l of await loopsUnder(dir)) await run('losetup', ['-d', l.device]).catch(() => undefined);
  return loopDevicesUnder(dir);
}
