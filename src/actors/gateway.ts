// The gateway as the edge sees it: one root actor (gateway machine + real effects) and the
// operations the edge calls, each an event to an actor. This file composes; the parts live in
// creates.ts (ceilings, admission, CREATE), directory.ts (find/list/count sandboxes),
// processes.ts (commands), snapshots.ts, views.ts (wire views) and lifecycle-log.ts.
import { createActor, type Actor, type AnyActorRef } from 'xstate';
import type { GatewayContext, StopReason } from '../../machines/gateway.ts';
import type { RunnerCommand } from '../../machines/process.ts';
import type { RegistryContext, ScanResult, TemplateEntry } from '../../machines/registry.ts';
import type { ExecRequest } from '../../machines/types.ts';
import type { Backend, SnapshotRecord } from '../backends/types.ts';
import { CoppiceError, notFound, unsupported } from '../errors.ts';
import type { Logger } from '../log.ts';
import { createMetrics, type Metrics } from '../metrics.ts';
import type { ScanRoots } from '../registry/scan.ts';
import { enabledBackends, provideGateway, type Backends, type EffectDeps } from './effects.ts';
import { capabilitiesOf, hasExternalPool, hasSnapshots, type Capabilities, type SnapshotCapable } from '../backends/capabilities.ts';
import { Creates, type Ceilings, type CreateOptions, type CreateRequest } from './creates.ts';
import { SandboxDirectory } from './directory.ts';
import { logLifecycle } from './lifecycle-log.ts';
import type { ProcessChannel, ChannelOptions } from './process-channel.ts';
import { Processes } from './processes.ts';
import { ProcessTable, type ProcessEntry, type ProcessKind } from './process-table.ts';
import { Snapshots } from './snapshots.ts';
import { poolOf, poolView, publicState } from './views.ts';
import { SANDBOX_ID } from './ids.ts';
import { Reaper } from './reaper.ts';
import type { SandboxStore } from './store.ts';
import { newReqId, request, whenDone } from './request.ts';
import type { ExecResultView as ExecResult, PoolStatsView, PoolView, PublicState, SandboxView } from '../protocol/views.ts';

export { publicState, SANDBOX_ID };
export type { Ceilings, CreateRequest, ExecResult, PoolStatsView, PoolView, PublicState, SandboxView };
export type Lifecycle = 'starting' | 'serving' | 'draining' | 'stopped';

export interface GatewayOptions extends CreateOptions {
  backends: Backends;
  roots: ScanRoots;
  logger: Logger;
  shardCount?: number;
  drainDeadlineMs?: number;
  /** Durable sandbox records (re-adoption after a restart). */
  store?: SandboxStore;
  /** Warm pools of frozen jail sandboxes (size per template; templates null = every jail template). */
  jailPool?: { size: number; templates: string[] | null };
  /** Cap on bytes kept per buffered exec (stdout + stderr). */
  execCaptureLimit?: number;
  startup?: EffectDeps['startup'];
}

type RootActor = Actor<ReturnType<typeof provideGateway>>;


export class Gateway {
  readonly actor: RootActor;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Settles with the reason once the root actor reaches `stopped`. */
  readonly stopped: Promise<StopReason>;
  /** Every command per sandbox, running or recently finished (re-attach, listing). */
  readonly processes: ProcessTable;
  private readonly opts: GatewayOptions;
  private readonly reaper = new Reaper();
  private readonly sandboxes: SandboxDirectory;
  private readonly creates: Creates;
  private readonly commands: Processes;
  private readonly snapshots: Snapshots;

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.log = opts.logger;
    const enabled = enabledBackends(opts.backends);
    this.metrics = createMetrics(
      () => this.sandboxes.countByState(),
      () => this.pools().map((p) => ({ ...p, external: this.capabilities(p.backend).pool === 'external' })),
    );
    const machine = provideGateway({
      reaper: this.reaper,
      store: opts.store,
      backends: opts.backends,
      roots: opts.roots,
      startup: opts.startup,
      logger: opts.logger,
    });
    this.actor = createActor(machine, {
      systemId: 'gateway',
      input: {
        shardCount: opts.shardCount,
        drainDeadlineMs: opts.drainDeadlineMs,
        jailPool: opts.jailPool ?? null,
        externalPools: enabled.filter(([, b]) => hasExternalPool(b)).map(([k]) => k),
        snapshotBackends: enabled.filter(([, b]) => hasSnapshots(b)).map(([k]) => k),
      },
    });
    this.sandboxes = new SandboxDirectory(this.actor);
    this.creates = new Creates(this.actor, this.sandboxes, this.metrics, opts);
    this.processes = new ProcessTable({ isLive: (id) => this.actor.system.get(`sandbox:${id}`)?.getSnapshot().status === 'active' });
    this.commands = new Processes(this.actor, this.sandboxes, this.processes, this.metrics, opts.execCaptureLimit ?? 16 * 1024 * 1024);
    this.snapshots = new Snapshots(() => enabled.filter((e): e is [string, Backend & SnapshotCapable] => hasSnapshots(e[1])));
    this.stopped = new Promise((resolve) => {
      this.actor.subscribe({
        complete: () => {
          this.reaper.close();
          const c = this.actor.getSnapshot().context as GatewayContext;
          // Each with what the substrate said (pool-ctl drain's output is in the message).
          for (const f of c.drainFailures) this.log.error({ code: f.code, err: f.message }, 'pool drain failed');
          resolve(c.stopReason ?? 'drained');
        },
        error: (err) => {
          this.log.error({ err }, 'gateway actor crashed');
          resolve('forced');
        },
      });
    });
    this.actor.on('fault', (f) => this.log.error({ actor: f.actorId, err: f.error }, 'actor fault'));
    // Inspection costs every actor event something: only when the lines would be written.
    if (this.log.isLevelEnabled('info')) logLifecycle(this.actor, this.log);
    void this.stopped.then(() => this.processes.close());
  }

  start(): this {
    this.actor.start();
    return this;
  }

  get lifecycle(): Lifecycle {
    const s = this.actor.getSnapshot();
    for (const l of ['starting', 'serving', 'draining'] as const) if (s.matches(l)) return l;
    return 'stopped';
  }

  /** First SIGINT drains; a second forces the stop. */
  sigint(): void {
    this.actor.send({ type: 'SIGINT' });
  }

  /** New work is refused outside `serving`: 503, saying why (the edge asks once per request). */
  assertServing(): void {
    const l = this.lifecycle;
    if (l === 'serving') return;
    throw l === 'starting'
      ? new CoppiceError('not_ready', 'gateway is starting: not ready yet')
      : new CoppiceError('draining', `gateway is ${l}: no new work accepted`);
  }

  // ---- backends and templates ----

  private backend(kind: string): Backend | undefined {
    return enabledBackends(this.opts.backends).find(([k]) => k === kind)?.[1];
  }

  /** What the backend serving `kind` can do (snapshots, which kind of pool, a default user). */
  capabilities(kind: string): Capabilities {
    return capabilitiesOf(this.backend(kind));
  }

  private get registry(): AnyActorRef {
    return (this.actor.getSnapshot().context as GatewayContext).registry;
  }

  templates(): TemplateEntry[] {
    return (this.registry.getSnapshot().context as RegistryContext).templates;
  }

  reloadTemplates(): Promise<ScanResult> {
    return request<ScanResult>(this.registry, { type: 'RELOAD', reqId: newReqId() }, 60_000);
  }

  // ---- pools ----

  private poolRef(template: string): AnyActorRef {
    const ref = poolOf(this.actor.getSnapshot().context as GatewayContext, template);
    if (ref) return ref;
    const t = this.templates().find((x) => x.name === template);
    if (!t) throw notFound(`template "${template}"`);
    // A backend whose pools the gateway keeps (slots) has one only for the templates the operator
    // named: say how to get one, not that the backend cannot.
    if (this.capabilities(t.backend).pool === 'slots') {
      throw new CoppiceError(
        'unsupported',
        `template "${template}" has no warm pool on this gateway (start it with --jail-pool-size N, and --jail-pool-templates to choose templates)`,
      );
    }
    throw unsupported('warm pool', t.backend);
  }

  pools(): PoolView[] {
    return Object.values((this.actor.getSnapshot().context as GatewayContext).pools).map(poolView);
  }

  poolView(template: string): PoolView {
    return poolView(this.poolRef(template));
  }

  /** Warm a pool to `count` ready slots; progress lines go to `onProgress` as they come. */
  async warmPool(template: string, count: number, onProgress?: (line: string) => void): Promise<PoolStatsView> {
    const ref = this.poolRef(template);
    const sub = onProgress ? ref.on('progress', (e: { line: string }) => onProgress(e.line)) : undefined;
    try {
      return await request<PoolStatsView>(ref, { type: 'WARM', reqId: newReqId(), count }, 30 * 60_000);
    } finally {
      sub?.unsubscribe();
    }
  }

  /** The operator's drain: destroy the pool's idle slots; the pool stays usable. */
  emptyPool(template: string): Promise<PoolStatsView> {
    return request<PoolStatsView>(this.poolRef(template), { type: 'EMPTY', reqId: newReqId() }, 5 * 60_000);
  }

  /** Seed metrics: called by the bhyve backend after each pool-ctl checkout. */
  recordCheckout(template: string, ns: bigint): void {
    this.metrics.bhyveCheckoutNsSum.inc(Number(ns));
    this.metrics.bhyveCheckoutsTotal.inc();
    this.metrics.bhyveCheckoutSeconds.observe({ template }, Number(ns) / 1e9);
  }

  // ---- sandboxes ----

  view(id: string): SandboxView {
    return this.sandboxes.view(id);
  }

  list(): SandboxView[] {
    return this.sandboxes.list();
  }

  liveCount(): number {
    return this.sandboxes.liveCount();
  }

  /** A new sandbox: a pool hit or a cold create (see creates.ts and machines/placement.ts). */
  create(req: CreateRequest): Promise<SandboxView> {
    return this.creates.create(req);
  }

  /** A new sandbox with the source's files as of now, its own address, independent afterwards. */
  forkSandbox(id: string, req: Omit<CreateRequest, 'templateID'> = {}): Promise<SandboxView> {
    const src = this.sandboxes.snapshot(id).context;
    return this.creates.create({ templateID: src.template, limits: src.limits, envVars: src.envVars, metadata: src.metadata, ...req, forkOf: id });
  }

  async destroy(id: string): Promise<void> {
    const ref = this.sandboxes.ref(id);
    ref.send({ type: 'DESTROY' });
    await whenDone(ref, 60_000);
  }

  async pause(id: string): Promise<void> {
    await request(this.sandboxes.ref(id), { type: 'PAUSE', reqId: newReqId() }, 30_000);
  }

  async resume(id: string): Promise<void> {
    await request(this.sandboxes.ref(id), { type: 'RESUME', reqId: newReqId() }, 30_000);
  }

  /** Resume if paused and extend the timeout; true when it was resumed. */
  async connect(id: string, timeoutMs: number): Promise<boolean> {
    const r = await request<{ resumed: boolean }>(this.sandboxes.ref(id), { type: 'CONNECT', reqId: newReqId(), timeoutMs }, 30_000);
    return r?.resumed ?? false;
  }

  async setTimeout(id: string, timeoutMs: number): Promise<void> {
    await request(this.sandboxes.ref(id), { type: 'SET_TIMEOUT', reqId: newReqId(), timeoutMs }, 10_000);
  }

  // ---- snapshots (files only; the sandbox is frozen during the copy) ----

  snapshotSandbox(id: string): Promise<SnapshotRecord> {
    const ref = this.sandboxes.ref(id);
    const kind = this.sandboxes.snapshot(id).context.backend;
    if (!this.capabilities(kind).snapshots) throw unsupported('snapshot', kind);
    return this.snapshots.take(ref);
  }

  listSnapshots(): Promise<SnapshotRecord[]> {
    return this.snapshots.list();
  }

  findSnapshot(snapshotID: string): Promise<SnapshotRecord> {
    return this.snapshots.find(snapshotID);
  }

  deleteSnapshot(snapshotID: string): Promise<void> {
    return this.snapshots.delete(snapshotID);
  }

  // ---- commands ----

  /** Start a command; its bytes and exit arrive on the returned channel. */
  startProcess(id: string, req: ExecRequest, opts: ChannelOptions & { kind?: ProcessKind } = {}): Promise<ProcessChannel> {
    return this.commands.start(id, req, opts);
  }

  /** A helper command for the E2B file API: never listed, never re-attached. */
  startHelper(id: string, req: ExecRequest, opts: ChannelOptions = {}): Promise<{ channel: ProcessChannel; send(cmd: RunnerCommand): void }> {
    return this.commands.startHelper(id, req, opts);
  }

  /** A command of this sandbox, running or recently finished (404 otherwise). */
  processEntry(id: string, processId: string): ProcessEntry {
    return this.commands.entry(id, processId);
  }

  processList(id: string) {
    return this.commands.list(id);
  }

  /** The buffered exec: run to completion and return the captured output. */
  exec(id: string, req: ExecRequest): Promise<ExecResult> {
    return this.commands.exec(id, req);
  }
}
