// A parsed create body (coppice's or E2B's v1 form) -> the gateway's CreateRequest: the snapshot it
// names, if any, is looked up, and its template must agree with a named one.
import type { CreateRequest, Gateway } from '../actors/gateway.ts';
import { badRequest } from '../errors.ts';
import type { CreateSandboxFields } from '../protocol/requests.ts';

export async function createRequestOf(gw: Gateway, b: CreateSandboxFields): Promise<CreateRequest> {
  // From a snapshot: its template, unless one is named (then they must agree).
  const snap = b.snapshotID ? await gw.findSnapshot(b.snapshotID) : undefined;
  if (snap && b.templateID && b.templateID !== snap.template) {
    throw badRequest('templateID', `snapshot ${snap.snapshotID} was taken from template ${snap.template}`);
  }
  return {
    templateID: b.templateID ?? snap!.template,
    ...(snap ? { fromSnapshot: { snapshotID: snap.snapshotID } } : {}),
    timeoutMs: b.timeout === undefined ? undefined : b.timeout * 1000,
    metadata: b.metadata,
    envVars: b.envVars,
    limits: b.limits,
    internet: b.allow_internet_access ?? false,
  };
}
