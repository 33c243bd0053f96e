// Snapshots (files only; the sandbox is frozen during the copy), across every backend that has them.
import type { AnyActorRef } from 'xstate';
import type { SnapshotRecord } from '../backends/types.ts';
import { notFound } from '../errors.ts';
import { newSnapshotId } from './ids.ts';
import { newReqId, request } from './request.ts';
import type { SnapshotCapable } from '../backends/capabilities.ts';

export class Snapshots {
  /** `backends`: the enabled backends that take snapshots, by kind. */
  constructor(private readonly backends: () => [string, SnapshotCapable][]) {}

  /** Snapshot a sandbox actor (the caller checked its backend can). */
  take(ref: AnyActorRef): Promise<SnapshotRecord> {
    return request<SnapshotRecord>(ref, { type: 'SNAPSHOT', reqId: newReqId(), snapshotID: newSnapshotId() }, 10 * 60_000);
  }

  async list(): Promise<SnapshotRecord[]> {
    const all = await Promise.all(this.backends().map(([, b]) => b.listSnapshots()));
    return all.flat();
  }

  async find(snapshotID: string): Promise<SnapshotRecord> {
    const s = (await this.list()).find((x) => x.snapshotID === snapshotID);
    if (!s) throw notFound(`snapshot "${snapshotID}"`);
    return s;
  }

  async delete(snapshotID: string): Promise<void> {
    const s = await this.find(snapshotID);
    await this.backends().find(([k]) => k === s.backend)?.[1].deleteSnapshot(snapshotID);
  }
}
