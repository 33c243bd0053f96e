// The sandbox root filesystem: an overlay whose lower layer is the template directory itself (shared,
// never written) and whose upper/work dirs are per sandbox. Mount source is `coppice-<id>` so the
// mount is findable by name in `mount` / /proc/self/mountinfo.
import { constants, readFileSync } from 'node:fs';
import { chmod, chown, lstat, mkdir, open, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { badRequest } from '../../../errors.ts';
import type { SandboxNames } from './names.ts';
import { run } from './run.ts';

/** overlayfs option syntax has no escaping for these in lowerdir. */
export function assertOverlaySafe(path: string): void {
  if (!path.startsWith('/') || /[,:\\\s]/.test(path)) {
    throw badRequest('template', `template path ${JSON.stringify(path)} must be absolute, without , : \\ or spaces`);
  }
}

/** `lower`: the template dir, or its idmapped view (n.lower) in a sandbox with a user namespace. */
export async function mountOverlay(n: SandboxNames, lower: string, signal?: AbortSignal): Promise<void> {
  const opts = `lowerdir=${lower},upperdir=${n.upper},workdir=${n.work}`;
  await run('mount', ['-t', 'overlay', n.container, '-o', opts, n.rootfs], { signal });
}

const DEFAULT_HOSTS = '127.0.0.1\tlocalhost\n::1\t\tlocalhost ip6-localhost ip6-loopback\n';

/**
 * Make the sandbox's hostname (its id) resolvable: the template's /etc/hosts plus `<ip> <id>`, written
 * into the upper dir before the overlay is mounted, so no sandbox process exists yet that could race
 * us. Without it sudo waits ~20 s on DNS for its own hostname. A plain file (not docker's bind
 * mount) so tools that rewrite /etc/hosts by rename keep working.
 *
 * A sandbox made from a snapshot already has an upper layer, written by a sandbox: its etc/ or
 * etc/hosts may be symlinks planted to point at host files. Nothing here follows them: non-regular
 * entries are removed (rm never follows), the new file is created O_EXCL, and the previous hosts
 * file is read only when lstat says it is a regular file.
 */
/** `rootId`: the host uid/gid of the sandbox's root (its user namespace range), owner of what is written. */
export async function seedEtcHosts(n: SandboxNames, lower: string, ip: string, rootId = 0): Promise<void> {
  const etc = await stat(join(lower, 'etc')).catch(() => null);
  if (!etc?.isDirectory()) return; // a template without /etc: nothing to resolve with anyway
  const dir = join(n.upper, 'etc');
  const hosts = join(dir, 'hosts');
  const upperEtc = await lstat(dir).catch(() => null);
  let base: string | null = null;
  if (upperEtc?.isDirectory()) {
    const prev = await lstat(hosts).catch(() => null);
    // Keep the sandbox's own entries, minus the line naming the sandbox it was snapshotted from.
    if (prev?.isFile()) base = (await readFile(hosts, 'utf8')).split('\n').filter((l) => !/^\S+\t[a-z0-9]{10}$/.test(l)).join('\n');
    await rm(hosts, { recursive: true, force: true });
  } else {
    if (upperEtc) await rm(dir, { recursive: true, force: true });
    // The upper copy of /etc shadows the template's directory metadata: keep owner and mode identical.
    await mkdir(dir);
    await chown(dir, etc.uid, etc.gid);
    await chmod(dir, etc.mode & 0o7777);
  }
  base ??= await readFile(join(lower, 'etc', 'hosts'), 'utf8').catch(() => DEFAULT_HOSTS);
  const text = `${base.endsWith('\n') || base === '' ? base : base + '\n'}${ip}\t${n.id}\n`;
  await writeFile(hosts, text, { mode: 0o644, flag: 'wx' });
  if (rootId !== 0) await chown(hosts, rootId, rootId);
}

/**
 * Give a sandbox with internet access a usable /etc/resolv.conf (`text`, see dns.ts), written into
 * the upper dir before the overlay is mounted. Runs after seedEtcHosts, which made upper/etc a real
 * directory (if the template has /etc at all). The same care as there with what a snapshot's upper
 * layer may hold: a non-regular entry is removed (never followed) and the file is created O_EXCL;
 * a regular resolv.conf the sandbox wrote itself (no coppice marker) is kept.
 */
export async function seedResolvConf(n: SandboxNames, text: string, marker: string, rootId = 0): Promise<void> {
  const dir = join(n.upper, 'etc');
  if (!(await lstat(dir).catch(() => null))?.isDirectory()) return;
  const file = join(dir, 'resolv.conf');
  const prev = await lstat(file).catch(() => null);
  if (prev?.isFile() && !(await startsWith(file, marker))) return;
  if (prev) await rm(file, { recursive: true, force: true });
  await writeFile(file, text, { mode: 0o644, flag: 'wx' });
  if (rootId !== 0) await chown(file, rootId, rootId);
}

/** Whether `file` begins with `prefix`; reads only that many bytes (a sandbox may have made it huge). */
async function startsWith(file: string, prefix: string): Promise<boolean> {
  const fh = await open(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    const want = Buffer.from(prefix);
    const buf = Buffer.alloc(want.length);
    const { bytesRead } = await fh.read(buf, 0, want.length, 0);
    return bytesRead === want.length && buf.equals(want);
  } finally {
    await fh.close();
  }
}

/** Mount points at or under `path`, deepest first, from our mount namespace's mountinfo. */
export function mountsUnder(path: string): string[] {
  const out: string[] = [];
  for (const line of readFileSync('/proc/self/mountinfo', 'utf8').split('\n')) {
    const mp = line.split(' ')[4];
    if (mp === undefined) continue;
    // mountinfo escapes spaces etc. as \040; our paths never contain them.
    if (mp === path || mp.startsWith(path + '/')) out.push(mp);
  }
  return out.sort((a, b) => b.length - a.length);
}

/** Unmount whatever is mounted at/under the rootfs; falls back to a lazy unmount. Returns what is left. */
export async function unmountRootfs(n: SandboxNames): Promise<string[]> {
  for (const mp of mountsUnder(n.dir)) {
    try {
      await run('umount', [mp]);
    } catch {
      await run('umount', ['-l', mp]).catch(() => undefined);
    }
  }
  return mountsUnder(n.dir).map((mp) => `mount ${mp}`);
}
