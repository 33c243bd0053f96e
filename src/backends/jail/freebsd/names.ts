// Every host object a FreeBSD jail sandbox owns is named from its id (UNTESTED ON REAL FREEBSD):
//   dataset    <root>/sandboxes/<id>          (a zfs clone; mounted at <jailsDir>/<id>)
//   jail       coppice-<id>
//   epair      cpc<id>a (host side, on the bridge) / cpc<id>b (moved into the jail's vnet)
//   snapshot   <root>/sandboxes/<id>@<snapshotId>
// Templates map to datasets by NAME: template `base` is `<root>/templates/base`, cloned from its
// `@base` snapshot. The registry still finds it by directory, so the template dataset's mountpoint
// must be `<templates_root>/<name>-template` (ops/freebsd/TEMPLATES.md).
import { badRequest } from '../../../errors.ts';
import type { Template } from '../../types.ts';

/** 10 chars keeps `cpc<id>a` at 14 bytes, inside FreeBSD's IFNAMSIZ (16 with the NUL). */
export const ID_RE = /^[a-z0-9]{10}$/;
export const JAIL_PREFIX = 'coppice-';
/** What a ZFS snapshot component may hold, minus anything our parsing or a shell would trip on. */
export const SNAPSHOT_ID_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$/;
const COMPONENT_RE = /^[A-Za-z0-9][A-Za-z0-9_.:-]*$/;

export interface Layout {
  /** Dataset under which `templates/` and `sandboxes/` live, e.g. `zroot/coppice`. */
  root: string;
  /** Parent directory of the sandboxes' mountpoints, e.g. `/var/lib/coppice/jails`. */
  jailsDir: string;
  /** Snapshot of each template dataset that sandboxes are cloned from. Default `base`. */
  templateSnapshot: string;
}

export interface FreebsdNames {
  id: string;
  jail: string;
  ifA: string;
  ifB: string;
  dataset: string;
  mountpoint: string;
}

export function assertId(id: string): void {
  if (!ID_RE.test(id)) throw badRequest('id', `sandbox id must be 10 chars [a-z0-9], got ${JSON.stringify(id)}`);
}

export function assertSnapshotId(id: string): void {
  if (!SNAPSHOT_ID_RE.test(id)) {
    throw badRequest('snapshotID', `must be 1-64 chars [A-Za-z0-9_.:-] starting with a letter or digit, got ${JSON.stringify(id)}`);
  }
}

export function assertLayout(l: Layout): void {
  if (!l.root.split('/').every((c) => COMPONENT_RE.test(c))) throw new Error(`jail/freebsd: bad dataset root ${JSON.stringify(l.root)}`);
  if (!/^\/[^\s]*[^/\s]$/.test(l.jailsDir)) throw new Error(`jail/freebsd: jailsDir must be an absolute path without spaces: ${l.jailsDir}`);
  if (!COMPONENT_RE.test(l.templateSnapshot)) throw new Error(`jail/freebsd: bad template snapshot name ${l.templateSnapshot}`);
}

export function sandboxNames(l: Layout, id: string): FreebsdNames {
  return {
    id,
    jail: JAIL_PREFIX + id,
    ifA: `cpc${id}a`,
    ifB: `cpc${id}b`,
    dataset: `${l.root}/sandboxes/${id}`,
    mountpoint: `${l.jailsDir}/${id}`,
  };
}

/** `<root>/templates/<name>@<templateSnapshot>`: what a cold create clones. */
export function templateOrigin(l: Layout, template: Template): string {
  if (!COMPONENT_RE.test(template.name)) throw badRequest('template', `${template.name} is not usable as a ZFS dataset name`);
  return `${l.root}/templates/${template.name}@${l.templateSnapshot}`;
}

export function snapshotDataset(l: Layout, sandboxId: string, snapshotId: string): string {
  return `${l.root}/sandboxes/${sandboxId}@${snapshotId}`;
}

/** The inverse of snapshotDataset; null for anything that is not one of our sandbox snapshots. */
export function parseSnapshotDataset(l: Layout, name: string): { sandboxId: string; snapshotId: string } | null {
  const prefix = `${l.root}/sandboxes/`;
  if (!name.startsWith(prefix)) return null;
  const [sandboxId, snapshotId, extra] = name.slice(prefix.length).split('@');
  if (extra !== undefined || !ID_RE.test(sandboxId ?? '') || !SNAPSHOT_ID_RE.test(snapshotId ?? '')) return null;
  return { sandboxId, snapshotId };
}
