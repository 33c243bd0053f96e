// The way in for a create or a fork: operator ceilings (400), the live cap and admission (429),
// then one CREATE event. The gateway machine refuses it (not serving, unknown template, no
// snapshots) or spawns a placement that answers (pool hit or cold: machines/placement.ts).
import type { Actor, AnyStateMachine } from 'xstate';
import type { CreateIntent, GatewayContext } from '../../machines/gateway.ts';
import type { Placed } from '../../machines/placement.ts';
import type { Limits } from '../../machines/types.ts';
import { DEFAULT_LIMITS } from '../backends/types.ts';
import { badRequest, CoppiceError, tooManyRequests } from '../errors.ts';
import type { Metrics } from '../metrics.ts';
import type { SandboxView } from '../protocol/views.ts';
import { Admission } from './admission.ts';
import type { SandboxDirectory } from './directory.ts';
import { awaitReply, newReqId } from './request.ts';
import { toView, type SandboxSnapshot } from './views.ts';

export interface Ceilings {
  memoryMiB: number;
  cpus: number;
  pids: number;
  timeoutS: number;
}

export interface CreateRequest {
  templateID: string;
  /** Egress beyond the host (E2B's allow_internet_access). */
  internet?: boolean;
  fromSnapshot?: { snapshotID: string; consume?: boolean };
  timeoutMs?: number;
  metadata?: Record<string, string>;
  envVars?: Record<string, string>;
  limits?: Partial<Limits>;
}

export interface CreateOptions {
  /** Live sandboxes at most (429 beyond). */
  maxSandboxes?: number;
  /** Creates running at once, and waiting beyond that (429 beyond both). */
  maxConcurrentCreates?: number;
  createQueue?: number;
  defaultTimeoutMs?: number;
  /** Operator ceilings on one create (400 naming the field beyond). */
  ceilings?: Ceilings;
  /** Sum of the memory limits of every sandbox (pool slots and creates in flight included), MiB. */
  memoryBudgetMiB?: number;
}

export class Creates {
  private readonly admission: Admission;

  constructor(
    private readonly root: Actor<AnyStateMachine>,
    private readonly sandboxes: SandboxDirectory,
    private readonly metrics: Metrics,
    private readonly opts: CreateOptions,
  ) {
    this.admission = new Admission(opts.maxConcurrentCreates ?? 32, opts.createQueue ?? 128);
  }

  /** A create, or a fork of `forkOf` (a snapshot of it, a create from that, the snapshot dropped). */
  async create(req: CreateRequest & { forkOf?: string }): Promise<SandboxView> {
    this.checkCeilings(req);
    const max = this.opts.maxSandboxes ?? Infinity;
    if (max !== Infinity && this.sandboxes.liveCount() >= max) throw tooManyRequests(`sandbox limit reached (${max} live)`, 5);
    const memory = req.limits?.memoryMiB ?? DEFAULT_LIMITS.memoryMiB;
    this.checkMemoryBudget(memory);
    // Creates in flight hold their share too, so a burst cannot overshoot the budget together.
    this.inFlightMiB += memory;
    try {
      return await this.admission.run(() => this.place(req));
    } finally {
      this.inFlightMiB -= memory;
    }
  }

  private inFlightMiB = 0;

  /** The host-wide budget: what every sandbox may use at once, committed as limits (429 beyond). */
  private checkMemoryBudget(memoryMiB: number): void {
    const budget = this.opts.memoryBudgetMiB;
    if (budget === undefined) return;
    // O(sandboxes), bounded by --max-sandboxes: cheap next to a create.
    const committed = this.sandboxes.committedMemoryMiB() + this.inFlightMiB;
    if (committed + memoryMiB > budget) {
      throw tooManyRequests(
        `host memory budget: ${committed} of ${budget} MiB are committed to sandboxes; this create needs ${memoryMiB} MiB more (--memory-budget-mib)`,
        5,
      );
    }
  }

  /** A create asking for more than the operator allows is refused before anything is made. */
  private checkCeilings(req: CreateRequest): void {
    const c = this.opts.ceilings;
    if (!c) return;
    const over = (field: string, value: number | undefined, max: number, unit: string) => {
      if (value !== undefined && value > max) throw badRequest(field, `${value} is above this gateway's ceiling of ${max}${unit}`);
    };
    over('limits.memoryMiB', req.limits?.memoryMiB, c.memoryMiB, ' MiB');
    over('limits.cpus', req.limits?.cpus, c.cpus, ' cpus');
    over('limits.pids', req.limits?.pids, c.pids, ' pids');
    over('timeout', req.timeoutMs === undefined ? undefined : Math.ceil(req.timeoutMs / 1000), c.timeoutS, ' s');
  }

  /** One CREATE, answered by the placement it spawns (or by the gateway machine's refusal). */
  private async place(req: CreateRequest & { forkOf?: string }): Promise<SandboxView> {
    const started = process.hrtime.bigint();
    const reqId = newReqId();
    const limits = { ...DEFAULT_LIMITS, ...req.limits };
    const intent: CreateIntent = {
      template: req.templateID,
      timeoutMs: req.timeoutMs ?? this.opts.defaultTimeoutMs ?? 300_000,
      limits,
      standardLimits: (Object.keys(limits) as (keyof Limits)[]).every((k) => limits[k] === DEFAULT_LIMITS[k]),
      metadata: req.metadata,
      envVars: req.envVars,
      internet: req.internet ?? false,
      ...(req.fromSnapshot ? { fromSnapshot: req.fromSnapshot } : {}),
      ...(req.forkOf ? { forkOf: req.forkOf } : {}),
    };
    const observe = (backend: string, outcome: string, err?: unknown) => {
      this.metrics.createSeconds.observe({ backend, outcome }, Number(process.hrtime.bigint() - started) / 1e9);
      this.metrics.createsTotal.inc({ backend, outcome });
      if (err) this.metrics.createFailures.inc({ backend, code: err instanceof CoppiceError ? err.code : 'internal' });
    };
    // A fork's snapshot may take minutes; each step has its own deadline, this is the backstop.
    const deadline = req.forkOf ? 15 * 60_000 : 5 * 60_000;
    const refusal = awaitReply(this.root, reqId, deadline, 'create');
    this.root.send({ type: 'CREATE', reqId, request: intent });
    const placement = this.root.system.get(`placement:${reqId}`);
    if (!placement) {
      await refusal.promise.catch((err) => {
        // Counted per backend: a create for an unknown template has none (it is a 404, not a refusal).
        const t = (this.root.getSnapshot().context as GatewayContext).templates.find((x) => x.name === req.templateID);
        if (t) observe(t.backend, 'refused', err);
        throw err;
      });
      throw new CoppiceError('internal', 'create was neither placed nor refused');
    }
    refusal.cancel();
    const backend = (placement.getSnapshot().context as { request: { backend: string } }).request.backend;
    let placed: Placed;
    try {
      placed = await awaitReply<Placed>(placement, reqId, deadline, 'create').promise;
    } catch (err) {
      observe(backend, 'failed', err);
      throw err;
    }
    observe(backend, placed.via === 'pool' ? 'pool' : 'ok');
    const ref = this.root.system.get(`sandbox:${placed.sandboxId}`);
    if (!ref) throw new CoppiceError('conflict', 'sandbox was destroyed while it was being created');
    return toView(ref.getSnapshot() as SandboxSnapshot);
  }
}
