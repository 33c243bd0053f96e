// Pause for FreeBSD jails: there is no cgroup freezer, so we SIGSTOP every process of the jail
// (what pot and cbsd do). UNTESTED ON REAL FREEBSD.
//
// The fork race: `pkill -STOP -j <jid>` lists the jail's processes, then signals them one by one.
// A process that forks in between has a child that was not on the list and keeps running. So we
// loop: signal, then read every process's state with `ps -o stat= -J <jid>`, and repeat until all
// of them show T (stopped) or Z (zombie). Each round can only shrink the set of running processes
// that existed before it, so a well-behaved jail converges in one or two rounds.
//
// Limits, to document rather than hide:
// - A jail that forks faster than we stop it (a fork bomb) may never converge: after `rounds`
//   attempts we SIGCONT everything and fail the pause. rctl's maxproc bounds how bad this gets.
// - It is not atomic: processes stop one after another; a process blocked in the kernel (state D)
//   stops only when it returns to user space (we wait for it, up to the round limit).
// - It is observable: parents get SIGCHLD/WSTOPPED for stopped children, a shell with job control
//   notices, and resume sends SIGCONT to EVERY process, including any the sandbox had stopped on
//   purpose (those wake up too). Timers and wall clock keep running; TCP peers may time out.
import { setTimeout as sleepMs } from 'node:timers/promises';
import { proc } from './commands.ts';
import { unstoppedStates } from './parse.ts';
import { CommandFailed, type CommandRunner } from './runner.ts';

export interface FreezeOptions {
  /** Signal-and-check rounds before giving up. Default 50. */
  rounds?: number;
  sleep?: (ms: number) => Promise<void>;
}

/** pkill/pgrep: 0 = signalled some, 1 = none matched (an empty persist jail), >1 = error. */
async function signalAll(runner: CommandRunner, sig: 'STOP' | 'CONT', jid: number): Promise<void> {
  const argv = proc.signalAll(sig, jid);
  const res = await runner.run(argv);
  if (res.code > 1) throw new CommandFailed(argv, res);
}

/** ps exits 1 when it selected no process: an empty jail is trivially stopped. */
async function running(runner: CommandRunner, jid: number): Promise<string[]> {
  const argv = proc.states(jid);
  const res = await runner.run(argv);
  if (res.code === 1 && res.stdout.trim() === '') return [];
  if (res.code !== 0) throw new CommandFailed(argv, res);
  return unstoppedStates(res.stdout);
}

/** Stop every process in the jail; returns the number of rounds it took. Fails (and continues them) after `rounds`. */
export async function stopAll(runner: CommandRunner, jid: number, opts: FreezeOptions = {}): Promise<number> {
  const rounds = opts.rounds ?? 50;
  const sleep = opts.sleep ?? ((ms: number) => sleepMs(ms));
  for (let round = 1, delay = 1; ; round++, delay = Math.min(delay * 2, 50)) {
    await signalAll(runner, 'STOP', jid);
    const left = await running(runner, jid);
    if (left.length === 0) return round;
    if (round >= rounds) {
      await signalAll(runner, 'CONT', jid).catch(() => undefined);
      throw new Error(`${left.length} process(es) of jail ${jid} still not stopped after ${rounds} rounds (states: ${left.join(' ')})`);
    }
    await sleep(delay);
  }
}

export async function continueAll(runner: CommandRunner, jid: number): Promise<void> {
  await signalAll(runner, 'CONT', jid);
}
