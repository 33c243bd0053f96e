// The plain data types of the actor tree that layers above it (edge, E2B) work with. They are
// defined by the statecharts in machines/; only src/actors imports machines, so they pass here.
export type { ExecRequest, Limits, ProcessExit } from '../../machines/types.ts';
export type { RunnerCommand } from '../../machines/process.ts';
export type { ScanResult, TemplateEntry } from '../../machines/registry.ts';
export { describe as describeState } from '../../machines/sandbox.ts';
export type { SandboxInput } from '../../machines/sandbox.ts';

// Limits are declared twice on purpose: machines/ imports nothing from src/, and backends never
// import machine types. This line keeps the two declarations identical (tsc fails otherwise).
import type { Limits as MachineLimits } from '../../machines/types.ts';
import type { Limits as BackendLimits } from '../backends/types.ts';
type Same<A, B> = [A] extends [B] ? ([B] extends [A] ? true : false) : false;
export const LIMITS_AGREE: Same<MachineLimits, BackendLimits> = true;
