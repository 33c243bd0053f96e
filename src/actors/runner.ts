// The `run` effect of the process machine: start the command on its sandbox's backend, pour its
// bytes into the ProcessChannel, take stdin and signals as events, report EXITED once.
import { fromCallback } from 'xstate';
import type { RunnerCommand } from '../../machines/process.ts';
import type { ExecRequest, ProcessExit } from '../../machines/types.ts';
import type { Backend, ExecProcess, SandboxHandle } from '../backends/types.ts';
import { toErrorInfo } from '../errors.ts';
import type { ProcessChannel } from './process-channel.ts';

export function createRunner(backendOf: (handle: SandboxHandle) => Backend) {
  return fromCallback<RunnerCommand, { request: ExecRequest; handle: unknown; channel: unknown }>(
    ({ input, sendBack, receive }) => {
      const handle = input.handle as SandboxHandle;
      const channel = input.channel as ProcessChannel;
      const { request } = input;
      let reason: string | undefined;
      let done = false;
      /** Stopped by the gateway (sandbox destroyed or drained): it dies of our SIGKILL, whatever exit races in. */
      let stopped = false;

      const finish = (exit: ProcessExit) => {
        if (done) return;
        done = true;
        // The teardown's kill of the container can reach the command before ours does; runc then
        // reports 137 instead of a signal. Either way the gateway ended it: say so, the same way.
        const final: ProcessExit = stopped
          ? { exitCode: null, signal: 'SIGKILL', reason: reason ?? 'killed' }
          : reason && !exit.reason ? { ...exit, reason } : exit;
        channel.finish(final);
        sendBack({ type: 'EXITED', exit: final });
      };

      let proc: ExecProcess;
      try {
        proc = backendOf(handle).exec(handle, {
          argv: request.argv,
          env: request.env,
          cwd: request.cwd,
          user: request.user,
          ...(request.pty ? { pty: request.pty } : {}),
        });
      } catch (err) {
        // Reported as an exit (not a thrown error) so the process actor ends cleanly. The channel
        // learns it at once, so whoever started it can tell a refused start from a run (ws start).
        const exit: ProcessExit = { exitCode: null, signal: null, error: toErrorInfo(err) };
        done = true;
        channel.finish(exit);
        queueMicrotask(() => sendBack({ type: 'EXITED', exit }));
        return () => {};
      }

      if (proc.pid) channel.setPidSource(() => proc.pid!());
      proc.stdout.on('data', (c: Buffer) => channel.write('stdout', c));
      proc.stderr.on('data', (c: Buffer) => channel.write('stderr', c));
      // Backpressure: a reader that falls behind pauses the pipes, so the command blocks on write.
      channel.setSource({
        pause: () => {
          proc.stdout.pause();
          proc.stderr.pause();
        },
        resume: () => {
          proc.stdout.resume();
          proc.stderr.resume();
        },
      });
      channel.setStdin({
        backlog: () => proc.stdin.writableLength,
        onceDrained: (cb) => {
          if (proc.stdin.writableLength === 0 || proc.stdin.writableEnded) return cb();
          const done = () => {
            proc.stdin.off('drain', done);
            proc.stdin.off('close', done);
            cb();
          };
          proc.stdin.on('drain', done);
          proc.stdin.on('close', done);
        },
      });
      // A command that never reads stdin closes it early; that is not an error of ours.
      proc.stdin.on('error', () => {});
      if (request.stdin && request.stdin.length > 0) proc.stdin.write(request.stdin);
      if (!request.keepStdinOpen) proc.stdin.end();

      // The exit is reported after the last output byte is in the channel: a source paused by
      // backpressure or pacing may still hold output when the command's exit arrives (the agent
      // reports the exit at once), and the channel takes no bytes after its exit.
      const drained = (s: NodeJS.ReadableStream & { readableEnded?: boolean; destroyed?: boolean }) =>
        new Promise<void>((resolve) => {
          if (s.readableEnded || s.destroyed) return resolve();
          s.once('end', resolve);
          s.once('close', resolve);
        });
      proc.exited.then(
        (exit) =>
          void Promise.all([drained(proc.stdout), drained(proc.stderr)]).then(() => finish({ exitCode: exit.exitCode, signal: exit.signal })),
        (err) => finish({ exitCode: null, signal: null, error: toErrorInfo(err) }),
      );

      receive((cmd) => {
        if (done) return;
        switch (cmd.type) {
          case 'STDIN':
            if (!proc.stdin.writableEnded) proc.stdin.write(cmd.data);
            break;
          case 'CLOSE_STDIN':
            if (!proc.stdin.writableEnded) proc.stdin.end();
            break;
          case 'SIGNAL':
            try {
              proc.kill(cmd.signal as NodeJS.Signals);
              if (cmd.reason) reason = cmd.reason;
            } catch {
              /* unknown signal name: the edge validates; never crash the actor over it */
            }
            break;
          case 'RESIZE':
            try {
              proc.resize?.(cmd.cols, cmd.rows); // no terminal: nothing to resize
            } catch {
              /* out of range: the edge validates; never crash the actor over it */
            }
            break;
        }
      });

      // Stopped before it exited (sandbox destroyed, gateway draining): the command dies too.
      return () => {
        if (done) return;
        reason ??= 'killed';
        stopped = true;
        proc.kill('SIGKILL');
      };
    },
  );
}
