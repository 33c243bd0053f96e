// What the microVM tests share: the kernel/initramfs builders and where their output is cached
// (built once, reused while the inputs are unchanged; the kernel .deb is fetched once).
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';

const run = promisify(execFile);
const repo = join(import.meta.dirname, '..', '..');
export const FETCH_KERNEL = join(repo, 'ops/microvm/fetch-kernel.sh');
export const BUILD_INITRAMFS = join(repo, 'ops/microvm/build-initramfs.sh');
export const MICROVM_POOL_CTL = join(repo, 'ops/pool-ctl/microvm/coppice-bhyve-pool-ctl.sh');
export const TSC_SCRIPT = join(repo, 'ops/microvm/tsc-khz.sh');
export const MICROVM_CACHE = process.env.COPPICE_TEST_MICROVM_CACHE ?? '/var/tmp/coppice-test-microvm';

export interface GuestKernel { dir: string; vmlinuz: string; initrd: string; release: string }

/** Fetches (or finds cached) the guest kernel and builds its initramfs. */
export async function guestKernel(): Promise<GuestKernel> {
  const dir = (await run('sh', [FETCH_KERNEL, MICROVM_CACHE], { timeout: 300_000 })).stdout.trim().split('\n').pop() ?? '';
  const initrd = (await run('sh', [BUILD_INITRAMFS, dir], { timeout: 120_000 })).stdout.trim().split('\n').pop() ?? '';
  return { dir, vmlinuz: join(dir, 'vmlinuz'), initrd, release: readFileSync(join(dir, 'release'), 'utf8').trim() };
}

/** The host TSC frequency the pool-ctl passes to TCG guests ('' when not constant). */
export async function tscKhz(): Promise<string> {
  return (await run('sh', [TSC_SCRIPT])).stdout.trim();
}
