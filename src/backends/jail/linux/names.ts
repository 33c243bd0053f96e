// Every host object a Linux jail sandbox owns is named from its id, so teardown, leak checks and
// re-adoption after a restart can find them without any state beyond the id.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { badRequest } from '../../../errors.ts';

/** 10 chars keeps `cpc<id>h` at 14 bytes, inside IFNAMSIZ (15 + NUL). */
export const ID_RE = /^[a-z0-9]{10}$/;
export const PREFIX = 'coppice-';

export function assertId(id: string): void {
  if (!ID_RE.test(id)) throw badRequest('id', `sandbox id must be 10 chars [a-z0-9], got ${JSON.stringify(id)}`);
}

export interface SandboxNames {
  id: string;
  /** runc container id, also the overlay mount's source name (so `mount | grep coppice-<id>` finds it). */
  container: string;
  netns: string;
  netnsPath: string;
  vethHost: string;
  /** Created under this name in the host, moved into the netns, then renamed `eth0`. */
  vethPeer: string;
  dir: string;
  /** The template seen through an idmapped bind mount (the overlay's lower layer). */
  lower: string;
  /** Mount point of the sandbox's disk image (quota.ts); holds upper/ and work/. */
  disk: string;
  diskImage: string;
  upper: string;
  work: string;
  rootfs: string;
  /** cgroupsPath in the OCI config; under every v1 hierarchy (and the unified one) on this host. */
  cgroupsPath: string;
}

export const NETNS_DIR = '/var/run/netns';
export const CGROUP_ROOT = '/sys/fs/cgroup';

export function sandboxNames(stateDir: string, id: string): SandboxNames {
  const dir = join(stateDir, 'sandboxes', id);
  return {
    id,
    container: PREFIX + id,
    netns: PREFIX + id,
    netnsPath: join(NETNS_DIR, PREFIX + id),
    vethHost: `cpc${id}h`,
    vethPeer: `cpc${id}c`,
    dir,
    lower: join(dir, 'lower'),
    disk: join(dir, 'disk'),
    diskImage: join(dir, 'disk.img'),
    upper: join(dir, 'disk', 'upper'),
    work: join(dir, 'disk', 'work'),
    rootfs: join(dir, 'rootfs'),
    cgroupsPath: `/coppice/${id}`,
  };
}

/** The container's v1 freezer cgroup; runc creates it from cgroupsPath. */
export function freezerStatePath(id: string): string {
  return join(CGROUP_ROOT, 'freezer', 'coppice', id, 'freezer.state');
}

/** Every cgroup directory runc may create for `/coppice/<id>`, one per mounted hierarchy. */
export function cgroupDirs(id: string): string[] {
  let hierarchies: string[];
  try {
    hierarchies = readdirSync(CGROUP_ROOT);
  } catch {
    return [];
  }
  // On a pure v2 host /sys/fs/cgroup itself is the hierarchy.
  return [join(CGROUP_ROOT, 'coppice', id), ...hierarchies.map((h) => join(CGROUP_ROOT, h, 'coppice', id))];
}
