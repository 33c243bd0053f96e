// After a restart (even a SIGKILL), make the actor tree match what is really on the host:
//   record + live substrate        -> re-adopted as an actor in its true state (running or paused),
//                                     its TTL continuing from the stored endAt;
//   record, substrate gone/residue -> residue destroyed, record dropped;
//   substrate without a record     -> destroyed (an orphan: a crash between create and record).
// Reconciliation trusts the backends, never a persisted actor snapshot (see xstate-notes).
import type { AnyActorRef } from 'xstate';
import type { SandboxInput } from '../../machines/sandbox.ts';
import type { Backend, LiveSandbox, SandboxHandle } from '../backends/types.ts';
import type { Logger } from '../log.ts';
import { backendFor, enabledBackends, type Backends } from './effects.ts';
import type { SandboxStore } from './store.ts';

export interface ReconcileReport {
  adopted: string[];
  orphanRecords: string[];
  orphanSandboxes: string[];
}

export async function reconcile(store: SandboxStore, backends: Backends, gateway: AnyActorRef, log: Logger): Promise<ReconcileReport> {
  const report: ReconcileReport = { adopted: [], orphanRecords: [], orphanSandboxes: [] };
  const { records, broken } = store.loadAll();
  for (const b of broken) log.warn({ file: b }, 'reconcile: unreadable sandbox record removed');
  const byId = new Map(records.map((r) => [r.id, r]));

  for (const [kind, backend] of enabledBackends(backends)) {
    let live: LiveSandbox[];
    try {
      live = await backend.listLive();
    } catch (err) {
      // Without the backend's truth nothing of it can be judged: keep its records for the next start.
      log.error({ backend: kind, err: (err as Error).message }, 'reconcile: cannot list live sandboxes; records kept');
      for (const r of records) if (r.backend === kind) byId.delete(r.id);
      continue;
    }
    for (const l of live) {
      const rec = byId.get(l.id);
      if (rec && rec.backend === kind && l.state !== 'unknown') {
        byId.delete(l.id);
        try {
          await backend.adopt?.(rec.handle);
        } catch (err) {
          log.error({ sandbox: l.id, err: (err as Error).message }, 'reconcile: adopt failed; destroying it');
          await destroyQuietly(backend, rec.handle, log);
          store.remove(l.id);
          continue;
        }
        gateway.send({ type: 'ADOPT', input: adoptInput(rec, l.state === 'paused') });
        report.adopted.push(l.id);
        log.info({ sandbox: l.id, state: l.state, endAt: new Date(rec.endAt).toISOString() }, 'reconcile: re-adopted');
        continue;
      }
      // No record (or only residue): it is nobody's sandbox any more.
      const handle: SandboxHandle = rec?.handle ?? { id: l.id, backend: kind, template: '', ip: '', data: l.data ?? {} };
      await destroyQuietly(backend, handle, log);
      if (rec) {
        byId.delete(l.id);
        store.remove(l.id);
        report.orphanRecords.push(l.id);
      }
      report.orphanSandboxes.push(l.id);
      log.warn({ sandbox: l.id, backend: kind, state: l.state }, 'reconcile: orphan sandbox destroyed');
    }
  }
  // Records whose sandbox no backend has any more.
  for (const rec of byId.values()) {
    if (!enabledBackends(backends).some(([k]) => k === rec.backend)) continue; // not enabled now: keep the record
    store.remove(rec.id);
    report.orphanRecords.push(rec.id);
    log.warn({ sandbox: rec.id, backend: rec.backend }, 'reconcile: record without a sandbox dropped');
  }
  return report;
}

function adoptInput(rec: import('./store.ts').SandboxRecord, paused: boolean): SandboxInput {
  return {
    id: rec.id,
    template: rec.template,
    backend: rec.backend,
    timeoutMs: rec.timeoutMs,
    limits: rec.limits,
    metadata: rec.metadata,
    envVars: rec.envVars,
    internet: rec.internet,
    now: rec.createdAt,
    adopt: { ip: rec.ip, handle: rec.handle, paused, endAt: rec.endAt },
  };
}

async function destroyQuietly(backend: Backend, handle: SandboxHandle, log: Logger): Promise<void> {
  try {
    await backend.destroy(handle);
  } catch (err) {
    log.error({ sandbox: handle.id, err: (err as Error).message }, 'reconcile: destroy failed');
  }
}
