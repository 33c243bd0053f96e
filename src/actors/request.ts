// The one way the edge asks an actor for something: send an event carrying a reqId and wait,
// with a deadline, for the single Reply the actor emits for it.
import { randomUUID } from 'node:crypto';
import type { AnyActorRef } from 'xstate';
import type { Reply } from '../../machines/types.ts';
import { CoppiceError, fromErrorInfo, type ErrorCode } from '../errors.ts';

export const newReqId = (): string => randomUUID();

export interface PendingReply<T> {
  promise: Promise<T>;
  cancel(): void;
}

/** Start listening for the reply to `reqId` (before the event is sent, so none is missed). */
export function awaitReply<T = unknown>(actor: AnyActorRef, reqId: string, deadlineMs: number, what: string): PendingReply<T> {
  let cancel = () => {};
  const promise = new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      sub.unsubscribe();
      reject(new CoppiceError('timeout', `${what} got no answer within ${deadlineMs} ms`));
    }, deadlineMs);
    const sub = actor.on('reply', (reply: Reply) => {
      if (reply.reqId !== reqId) return;
      clearTimeout(timer);
      sub.unsubscribe();
      if (reply.ok) resolve(reply.value as T);
      else reject(fromErrorInfo({ ...reply.error, code: reply.error.code as ErrorCode }));
    });
    cancel = () => {
      clearTimeout(timer);
      sub.unsubscribe();
    };
  });
  return { promise, cancel };
}

export function request<T = unknown>(
  actor: AnyActorRef,
  event: { type: string; reqId: string; [k: string]: unknown },
  deadlineMs: number,
): Promise<T> {
  if (actor.getSnapshot().status !== 'active') {
    return Promise.reject(new CoppiceError('not_found', 'sandbox not found'));
  }
  const pending = awaitReply<T>(actor, event.reqId, deadlineMs, event.type.toLowerCase());
  actor.send(event);
  return pending.promise;
}

/** Resolves when the actor reaches a final state (or is stopped). */
export function whenDone(actor: AnyActorRef, deadlineMs: number): Promise<void> {
  if (actor.getSnapshot().status !== 'active') return Promise.resolve();
  return new Promise((resolve, reject) => {
    let settled = false;
    const finish = (err?: Error) => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      queueMicrotask(() => sub.unsubscribe());
      if (err) reject(err);
      else resolve();
    };
    const timer = setTimeout(() => finish(new CoppiceError('timeout', `did not finish within ${deadlineMs} ms`)), deadlineMs);
    const sub = actor.subscribe({
      next: (s: { status: string }) => {
        if (s.status !== 'active') finish();
      },
      complete: () => finish(),
      error: () => finish(),
    });
  });
}
