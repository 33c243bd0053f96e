// What a backend can do beyond the core interface, as optional capability interfaces. Core code
// asks "does this backend have capability X", never "is it backend Y": a new isolation class is
// a folder under src/backends plus the line in app.ts that creates it.
import type { Backend, SnapshotRecord, SandboxHandle } from './types.ts';

/** Consistent file snapshots (and so forks and creates from a snapshot). */
export interface SnapshotCapable {
  snapshot(handle: SandboxHandle, snapshotID: string): Promise<SnapshotRecord>;
  deleteSnapshot(snapshotID: string): Promise<void>;
  listSnapshots(): Promise<SnapshotRecord[]>;
}

/** A pool kept by the substrate itself (bhyve's pool-ctl): warm, drain and count slots by template. */
export interface ExternalPoolCapable {
  warm(template: string, count: number, onProgress?: (line: string) => void, signal?: AbortSignal): Promise<{ template: string; available: number }>;
  drain(template: string, signal?: AbortSignal): Promise<void>;
  pool(signal?: AbortSignal): Promise<{ templates: Record<string, { available: number; in_use: number }>; accel?: string }>;
}

/** The backend chooses the user a command runs as when the request names none (a template's `user`). */
export interface DefaultUserCapable {
  defaultUser(template: { name: string; path: string }): string;
}

/** A disk quota per sandbox: this many MiB when a create names none (`--disk-mib`). */
export interface DiskQuotaCapable {
  readonly defaultDiskMiB: number;
}

export interface Capabilities {
  snapshots: boolean;
  /** The quota a sandbox gets when its create names none (null: the backend sets none). */
  defaultDiskMiB: number | null;
  /** external: the substrate keeps the pool; slots: the gateway keeps frozen sandboxes as slots. */
  pool: 'external' | 'slots';
  defaultUser: boolean;
}

export const hasSnapshots = (b: Backend | undefined): b is Backend & SnapshotCapable =>
  typeof b?.snapshot === 'function' && typeof b.deleteSnapshot === 'function' && typeof b.listSnapshots === 'function';

export const hasExternalPool = (b: Backend | undefined): b is Backend & ExternalPoolCapable =>
  typeof (b as Partial<ExternalPoolCapable> | undefined)?.warm === 'function' &&
  typeof (b as Partial<ExternalPoolCapable>).drain === 'function' &&
  typeof (b as Partial<ExternalPoolCapable>).pool === 'function';

export const hasDefaultUser = (b: Backend | undefined): b is Backend & DefaultUserCapable =>
  typeof (b as Partial<DefaultUserCapable> | undefined)?.defaultUser === 'function';

export function capabilitiesOf(b: Backend | undefined): Capabilities {
  const quota = (b as Partial<DiskQuotaCapable> | undefined)?.defaultDiskMiB;
  return {
    snapshots: hasSnapshots(b),
    pool: hasExternalPool(b) ? 'external' : 'slots',
    defaultUser: hasDefaultUser(b),
    defaultDiskMiB: typeof quota === 'number' ? quota : null,
  };
}
