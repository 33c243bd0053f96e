// The actor tree, alive: one root actor (gateway machine + real effects) and the operations the
// edge calls. Every operation is an event to an actor; nothing here changes a sandbox directly.
import { createActor, type Actor, type AnyActorRef } from 'xstate';
import type { CreateIntent, GatewayContext, StopReason } from '../../machines/gateway.ts';
import type { Placed } from '../../machines/placement.ts';
import type { PoolContext } from '../../machines/pool.ts';
import type { ProcessOutput, RunnerCommand } from '../../machines/process.ts';
import type { RegistryContext, ScanResult, TemplateEntry } from '../../machines/registry.ts';
import { describe } from '../../machines/sandbox.ts';
import type { ExecRequest, Limits, ProcessExit } from '../../machines/types.ts';
import { DEFAULT_LIMITS, type Backend, type SnapshotRecord } from '../backends/types.ts';
import { badRequest, CoppiceError, notFound, tooManyRequests, unsupported } from '../errors.ts';
import type { Logger } from '../log.ts';
import { createMetrics, type Metrics } from '../metrics.ts';
import type { ScanRoots } from '../registry/scan.ts';
import { enabledBackends, provideGateway, type Backends, type EffectDeps } from './effects.ts';
import { capabilitiesOf, hasExternalPool, hasSnapshots, type Capabilities, type SnapshotCapable } from '../backends/capabilities.ts';
import { ProcessChannel, type ChannelOptions } from './process-channel.ts';
import { ProcessTable, type ProcessEntry, type ProcessKind } from './process-table.ts';
import { Admission } from './admission.ts';
import { isPoolSlot, poolOf, poolView, publicState, toView, type SandboxSnapshot } from './views.ts';
export { publicState };
import { freshSandboxId, newSnapshotId, SANDBOX_ID } from './ids.ts';
import { Reaper } from './reaper.ts';
import type { SandboxStore } from './store.ts';
import { awaitReply, newReqId, request, whenDone } from './request.ts';

export type Lifecycle = 'starting' | 'serving' | 'draining' | 'stopped';

import type { ExecResultView as ExecResult, PoolStatsView, PoolView, PublicState, SandboxView } from '../protocol/views.ts';
export type { ExecResult, PoolStatsView, PoolView, PublicState, SandboxView };

export interface Ceilings {
  memoryMiB: number;
  cpus: number;
  pids: number;
  timeoutS: number;
}

export interface GatewayOptions {
  backends: Backends;
  roots: ScanRoots;
  logger: Logger;
  shardCount?: number;
  drainDeadlineMs?: number;
  /** Live sandboxes at most (429 beyond). */
  maxSandboxes?: number;
  /** Creates running at once, and waiting beyond that (429 beyond both). */
  maxConcurrentCreates?: number;
  createQueue?: number;
  /** Durable sandbox records (re-adoption after a restart). */
  store?: SandboxStore;
  /** Warm pools of frozen jail sandboxes (size per template; templates null = every jail template). */
  jailPool?: { size: number; templates: string[] | null };
  defaultTimeoutMs?: number;
  /** Operator ceilings on one create (400 naming the field beyond). */
  ceilings?: Ceilings;
  /** Cap on bytes kept per buffered exec (stdout + stderr). */
  execCaptureLimit?: number;
  startup?: EffectDeps['startup'];
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





type RootActor = Actor<ReturnType<typeof provideGateway>>;

export { SANDBOX_ID };


export class Gateway {
  readonly actor: RootActor;
  readonly metrics: Metrics;
  readonly log: Logger;
  /** Settles with the reason once the root actor reaches `stopped`. */
  readonly stopped: Promise<StopReason>;
  private readonly opts: GatewayOptions;
  private processSeq = 0;
  private readonly admission: Admission;
  private readonly reaper = new Reaper();
  /** Every command per sandbox, running or recently finished (re-attach, listing). */
  readonly processes: ProcessTable;

  constructor(opts: GatewayOptions) {
    this.opts = opts;
    this.log = opts.logger;
    this.admission = new Admission(opts.maxConcurrentCreates ?? 32, opts.createQueue ?? 128);
    this.metrics = createMetrics(
      () => this.countByState(),
      () => this.pools().map((p) => ({ ...p, external: this.capabilities(p.backend).pool === 'external' })),
    );
    const machine = provideGateway({
      reaper: this.reaper,
      store: opts.store,
      backends: opts.backends,
      roots: opts.roots,
      startup: opts.startup,
    });
    this.actor = createActor(machine, {
      systemId: 'gateway',
      input: {
        shardCount: opts.shardCount,
        drainDeadlineMs: opts.drainDeadlineMs,
        jailPool: opts.jailPool ?? null,
        externalPools: enabledBackends(opts.backends).filter(([, b]) => hasExternalPool(b)).map(([k]) => k),
        snapshotBackends: enabledBackends(opts.backends).filter(([, b]) => hasSnapshots(b)).map(([k]) => k),
      },
    });
    this.stopped = new Promise((resolve) => {
      this.actor.subscribe({
        complete: () => {
          this.reaper.close();
          resolve(this.actor.getSnapshot().context.stopReason ?? 'drained');
        },
        error: (err) => {
          this.log.error({ err }, 'gateway actor crashed');
          resolve('forced');
        },
      });
    });
    this.actor.on('fault', (f) => this.log.error({ actor: f.actorId, err: f.error }, 'actor fault'));
    // Inspection costs every actor event something: only when the lines would be written.
    if (this.log.isLevelEnabled('info')) this.watchLifecycle();
    this.processes = new ProcessTable({ isLive: (id) => this.actor.system.get(`sandbox:${id}`)?.getSnapshot().status === 'active' });
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

  // ---- templates ----

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
  async emptyPool(template: string): Promise<PoolStatsView> {
    return request<PoolStatsView>(this.poolRef(template), { type: 'EMPTY', reqId: newReqId() }, 5 * 60_000);
  }

  /** Seed metrics: called by the bhyve backend after each pool-ctl checkout. */
  recordCheckout(template: string, ns: bigint): void {
    this.metrics.bhyveCheckoutNsSum.inc(Number(ns));
    this.metrics.bhyveCheckoutsTotal.inc();
    this.metrics.bhyveCheckoutSeconds.observe({ template }, Number(ns) / 1e9);
  }

  // ---- sandboxes ----

  private ref(id: string): AnyActorRef {
    const ref = SANDBOX_ID.test(id) ? this.actor.system.get(`sandbox:${id}`) : undefined;
    const s = ref?.getSnapshot() as SandboxSnapshot | undefined;
    if (!ref || s?.status !== 'active' || isPoolSlot(s)) throw notFound(`sandbox "${id}"`);
    return ref;
  }

  private sandboxSnapshot(id: string): SandboxSnapshot {
    return this.ref(id).getSnapshot() as SandboxSnapshot;
  }

  view(id: string): SandboxView {
    return toView(this.sandboxSnapshot(id));
  }

  list(): SandboxView[] {
    const views: SandboxView[] = [];
    for (const ref of this.sandboxRefs()) {
      const s = ref.getSnapshot() as SandboxSnapshot;
      if (s.status === 'active' && !isPoolSlot(s)) views.push(toView(s));
    }
    return views;
  }

  private *sandboxRefs(): Generator<AnyActorRef> {
    for (const shard of (this.actor.getSnapshot().context as GatewayContext).shards) {
      for (const child of Object.values(shard.getSnapshot().children)) if (child) yield child as AnyActorRef;
    }
  }

  private countByState(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const ref of this.sandboxRefs()) {
      const s = ref.getSnapshot() as SandboxSnapshot;
      const key = `${publicState(s)}|${s.context.backend}`;
      counts.set(key, (counts.get(key) ?? 0) + 1);
    }
    return counts;
  }

  /** New work is refused outside `serving`: 503, saying why (the edge asks once per request). */
  assertServing(): void {
    const l = this.lifecycle;
    if (l === 'serving') return;
    throw l === 'starting'
      ? new CoppiceError('not_ready', 'gateway is starting: not ready yet')
      : new CoppiceError('draining', `gateway is ${l}: no new work accepted`);
  }

  /**
   * Admission first (live cap, bounded concurrency and queue: 429 + Retry-After beyond); then one
   * CREATE to the gateway machine, which refuses it (not serving, unknown template, no snapshots)
   * or hands it to a placement (pool hit or cold; see machines/placement.ts).
   */
  create(req: CreateRequest): Promise<SandboxView> {
    return this.admit(req);
  }

  private async admit(req: CreateRequest & { forkOf?: string }): Promise<SandboxView> {
    this.checkCeilings(req);
    const max = this.opts.maxSandboxes ?? Infinity;
    if (max !== Infinity && this.liveCount() >= max) throw tooManyRequests(`sandbox limit reached (${max} live)`, 5);
    return this.admission.run(() => this.place(req));
  }

  /**
   * Live caller sandboxes, from the shards' own counts minus the pools' parked slots: O(shards),
   * never a walk over every sandbox (that made each create O(N), so N creates O(N^2)).
   */
  liveCount(): number {
    const c = this.actor.getSnapshot().context as GatewayContext;
    let n = 0;
    for (const shard of c.shards) n += shard.getSnapshot().context.live;
    for (const pool of Object.values(c.pools)) n -= (pool.getSnapshot().context as PoolContext).slots.length;
    return Math.max(0, n);
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
    const observe = (backend: string, outcome: string) =>
      this.metrics.createSeconds.observe({ backend, outcome }, Number(process.hrtime.bigint() - started) / 1e9);
    // A fork's snapshot may take minutes; each step has its own deadline, this is the backstop.
    const deadline = req.forkOf ? 15 * 60_000 : 5 * 60_000;
    const refusal = awaitReply(this.actor, reqId, deadline, 'create');
    this.actor.send({ type: 'CREATE', reqId, request: intent });
    const placement = this.actor.system.get(`placement:${reqId}`);
    if (!placement) {
      await refusal.promise.catch((err) => {
        observe(this.templates().find((t) => t.name === req.templateID)?.backend ?? 'unknown', 'refused');
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
      observe(backend, 'failed');
      throw err;
    }
    observe(backend, placed.via === 'pool' ? 'pool' : 'ok');
    const ref = this.actor.system.get(`sandbox:${placed.sandboxId}`);
    if (!ref) throw new CoppiceError('conflict', 'sandbox was destroyed while it was being created');
    return toView(ref.getSnapshot() as SandboxSnapshot);
  }

  async destroy(id: string): Promise<void> {
    const ref = this.ref(id);
    ref.send({ type: 'DESTROY' });
    await whenDone(ref, 60_000);
  }

  async pause(id: string): Promise<void> {
    await request(this.ref(id), { type: 'PAUSE', reqId: newReqId() }, 30_000);
  }

  async resume(id: string): Promise<void> {
    await request(this.ref(id), { type: 'RESUME', reqId: newReqId() }, 30_000);
  }

  /** Resume if paused and extend the timeout; true when it was resumed. */
  async connect(id: string, timeoutMs: number): Promise<boolean> {
    const r = await request<{ resumed: boolean }>(this.ref(id), { type: 'CONNECT', reqId: newReqId(), timeoutMs }, 30_000);
    return r?.resumed ?? false;
  }

  async setTimeout(id: string, timeoutMs: number): Promise<void> {
    await request(this.ref(id), { type: 'SET_TIMEOUT', reqId: newReqId(), timeoutMs }, 10_000);
  }

  /** Snapshots and forks: no backend implements them yet; the seed's 501 shape for bhyve. */
  // ---- snapshots (files only; the sandbox is frozen during the copy) ----

  private snapshotter(kind: string, op: string): Backend & SnapshotCapable {
    const b = this.backend(kind);
    if (!hasSnapshots(b)) throw unsupported(op, kind);
    return b;
  }

  private backend(kind: string): Backend | undefined {
    return enabledBackends(this.opts.backends).find(([k]) => k === kind)?.[1];
  }

  /** What the backend serving `kind` can do (snapshots, which kind of pool, a default user). */
  capabilities(kind: string): Capabilities {
    return capabilitiesOf(this.backend(kind));
  }

  async snapshotSandbox(id: string, op = 'snapshot'): Promise<SnapshotRecord> {
    const ref = this.ref(id);
    this.snapshotter((ref.getSnapshot() as SandboxSnapshot).context.backend, op);
    return request<SnapshotRecord>(ref, { type: 'SNAPSHOT', reqId: newReqId(), snapshotID: newSnapshotId() }, 10 * 60_000);
  }

  /** A new sandbox with the source's files as of now, its own address, independent afterwards. */
  async forkSandbox(id: string, req: Omit<CreateRequest, 'templateID'> = {}): Promise<SandboxView> {
    const src = this.sandboxSnapshot(id).context;
    return this.admit({
      templateID: src.template,
      limits: src.limits,
      envVars: src.envVars,
      metadata: src.metadata,
      ...req,
      forkOf: id,
    });
  }

  async listSnapshots(): Promise<SnapshotRecord[]> {
    const all = await Promise.all(enabledBackends(this.opts.backends).map(([, b]) => b.listSnapshots?.() ?? []));
    return all.flat();
  }

  async findSnapshot(snapshotID: string): Promise<SnapshotRecord> {
    const s = (await this.listSnapshots()).find((x) => x.snapshotID === snapshotID);
    if (!s) throw notFound(`snapshot "${snapshotID}"`);
    return s;
  }

  async deleteSnapshot(snapshotID: string): Promise<void> {
    const s = await this.findSnapshot(snapshotID);
    await this.backend(s.backend)?.deleteSnapshot?.(snapshotID);
  }

  /** Start a command; its bytes and exit arrive on the returned channel. */
  async startProcess(id: string, req: ExecRequest, opts: ChannelOptions & { kind?: ProcessKind } = {}): Promise<ProcessChannel> {
    const { channel, proc } = await this.spawnProcess(id, req, opts);
    this.processes.add(id, channel, proc, { kind: opts.kind ?? 'stream', stdinOpen: req.keepStdinOpen ?? false });
    return channel;
  }

  /**
   * A helper command run on a client's behalf (the E2B file API's small shell commands): like
   * startProcess, but not in the process table (never listed, never re-attached). Stdin, EOF and
   * signals go through `send`.
   */
  async startHelper(id: string, req: ExecRequest, opts: ChannelOptions = {}): Promise<{ channel: ProcessChannel; send(cmd: RunnerCommand): void }> {
    const { channel, proc } = await this.spawnProcess(id, req, opts);
    // As in the process table: the actor's output settles a command whose runner never reported.
    const sub = proc?.subscribe({
      complete: () => {
        const out = (proc.getSnapshot() as { output?: ProcessOutput }).output;
        if (out) channel.finish(out.exit);
        queueMicrotask(() => sub?.unsubscribe());
      },
      error: () => undefined,
    });
    return { channel, send: (cmd) => proc?.send(cmd) };
  }

  private async spawnProcess(id: string, req: ExecRequest, opts: ChannelOptions): Promise<{ channel: ProcessChannel; proc: AnyActorRef | undefined }> {
    const ref = this.ref(id);
    const ctx = (ref.getSnapshot() as SandboxSnapshot).context;
    const processId = String(++this.processSeq);
    const channel = new ProcessChannel(processId, req.argv, opts);
    const request_: ExecRequest = { ...req, env: { ...ctx.envVars, ...req.env } };
    await request(ref, { type: 'EXEC', reqId: newReqId(), processId, request: request_, channel }, 10_000);
    return { channel, proc: this.actor.system.get(`process:${id}:${processId}`) as AnyActorRef | undefined };
  }

  /** A command of this sandbox, running or recently finished (404 otherwise). */
  processEntry(id: string, processId: string): ProcessEntry {
    this.ref(id);
    const e = this.processes.get(id, processId);
    if (!e) throw notFound(`process "${processId}" of sandbox "${id}"`);
    return e;
  }

  processList(id: string) {
    this.ref(id);
    return this.processes.list(id).map((e) => this.processes.view(e));
  }

  /** The buffered exec: run to completion and return the captured output. */
  async exec(id: string, req: ExecRequest): Promise<ExecResult> {
    const started = Date.now();
    const backend = this.sandboxSnapshot(id).context.backend;
    // Its full output is captured anyway: a small replay buffer is enough for a WebSocket observer.
    const channel = await this.startProcess(id, req, {
      kind: 'buffered',
      captureLimit: this.opts.execCaptureLimit ?? 16 * 1024 * 1024,
      replayLimit: 256 * 1024,
    });
    const exit: ProcessExit = await channel.exited;
    this.metrics.execSeconds.observe({ backend }, (Date.now() - started) / 1000);
    if (exit.error && exit.exitCode === null && exit.signal === null) {
      throw new CoppiceError('backend_failed', `exec failed: ${exit.error.message}`);
    }
    return {
      processID: channel.processId,
      exitCode: exit.exitCode,
      signal: exit.signal,
      stdout: channel.output('stdout').toString('utf8'),
      stderr: channel.output('stderr').toString('utf8'),
      truncated: channel.truncated,
      ...(exit.reason ? { reason: exit.reason } : {}),
      durationMs: Date.now() - started,
    };
  }

  // ---- observability ----

  /** A log line per lifecycle transition of the gateway and of every sandbox. */
  private watchLifecycle(): void {
    const last = new WeakMap<object, string>();
    this.actor.system.inspect({
      next: (ev) => {
        if (ev.type !== '@xstate.snapshot') return;
        const systemId = (ev.actorRef as { systemId?: string }).systemId;
        const isGateway = ev.actorRef === this.actor;
        if (!isGateway && !systemId?.startsWith('sandbox:')) return;
        const snap = ev.snapshot as unknown as SandboxSnapshot;
        // The gateway is logged by its top-level state (draining has parallel regions inside).
        const state =
          isGateway && typeof snap.value === 'object' && snap.value
            ? Object.keys(snap.value)[0]!
            : describe(snap.value);
        if (last.get(ev.actorRef) === state) return;
        last.set(ev.actorRef, state);
        if (isGateway) this.log.info({ gateway: state }, `gateway ${state}`);
        else {
          const c = snap.context;
          this.log.info(
            { sandbox: c.id, template: c.template, backend: c.backend, state, ...(c.error ? { error: c.error.message } : {}) },
            `sandbox ${c.id} ${state}`,
          );
        }
      },
    });
  }
}


