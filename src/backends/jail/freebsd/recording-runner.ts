// A CommandRunner for tests: records every argv, answers from a script, and can fail a chosen
// step. It is how the FreeBSD driver's command plan is checked on Linux (the driver itself is
// UNTESTED ON REAL FREEBSD). Rules are matched in the order they were added; the first live one wins.
import { PassThrough } from 'node:stream';
import type { CommandRunner, RunResult, SpawnedCommand } from './runner.ts';

export interface Reply {
  stdout?: string;
  stderr?: string;
  code?: number;
  /** spawn only: end as if killed by this signal (code null). */
  signal?: NodeJS.Signals;
}

/** A string matches the command line `argv.join(' ')` exactly or as a whole-word prefix. */
export type Matcher = string | RegExp | ((argv: string[]) => boolean);

export interface RecordedCall {
  kind: 'run' | 'spawn';
  argv: string[];
}

interface Rule {
  match: Matcher;
  reply: Reply | ((argv: string[]) => Reply);
  left: number;
}

export function matches(m: Matcher, argv: string[]): boolean {
  const line = argv.join(' ');
  if (typeof m === 'string') return line === m || line.startsWith(m + ' ');
  if (m instanceof RegExp) return m.test(line);
  return m(argv);
}

export class RecordingRunner implements CommandRunner {
  readonly calls: RecordedCall[] = [];
  /** Signals delivered through spawned commands' kill(), in order. */
  readonly kills: { argv: string[]; signal: NodeJS.Signals }[] = [];
  private readonly rules: Rule[] = [];

  /** Answer matching commands with `reply` (every time, or `times` times). */
  on(match: Matcher, reply: Reply | ((argv: string[]) => Reply), times = Infinity): this {
    this.rules.push({ match, reply, left: times });
    return this;
  }

  /** Answer the next matching command once. */
  once(match: Matcher, reply: Reply): this {
    return this.on(match, reply, 1);
  }

  /** Make the next matching command exit non-zero with `stderr` (the "fail a chosen step" knob). */
  fail(match: Matcher, stderr: string, code = 1): this {
    return this.on(match, { stderr, code }, 1);
  }

  /** Every recorded command line (run and spawn), as `argv.join(' ')`. */
  lines(): string[] {
    return this.calls.map((c) => c.argv.join(' '));
  }

  /** Forget what was recorded (rules stay). */
  clear(): void {
    this.calls.length = 0;
    this.kills.length = 0;
  }

  private answer(argv: string[]): Reply {
    for (const r of this.rules) {
      if (r.left > 0 && matches(r.match, argv)) {
        r.left--;
        return typeof r.reply === 'function' ? r.reply(argv) : r.reply;
      }
    }
    return {};
  }

  async run(argv: string[]): Promise<RunResult> {
    this.calls.push({ kind: 'run', argv: [...argv] });
    const r = this.answer(argv);
    return { stdout: r.stdout ?? '', stderr: r.stderr ?? '', code: r.code ?? 0 };
  }

  spawn(argv: string[]): SpawnedCommand {
    this.calls.push({ kind: 'spawn', argv: [...argv] });
    const r = this.answer(argv);
    const stdout = new PassThrough();
    const stderr = new PassThrough();
    const stdin = new PassThrough();
    let settle!: (v: { code: number | null; signal: NodeJS.Signals | null }) => void;
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((res) => (settle = res));
    let done = false;
    const finish = (code: number | null, signal: NodeJS.Signals | null) => {
      if (done) return;
      done = true;
      stdout.end();
      stderr.end();
      settle({ code, signal });
    };
    setImmediate(() => {
      if (done) return; // killed before it "ran"
      if (r.stdout) stdout.write(r.stdout);
      if (r.stderr) stderr.write(r.stderr);
      finish(r.signal ? null : (r.code ?? 0), r.signal ?? null);
    });
    return {
      stdout,
      stderr,
      stdin,
      exited,
      kill: (signal) => {
        this.kills.push({ argv: [...argv], signal });
        finish(null, signal);
      },
    };
  }
}
