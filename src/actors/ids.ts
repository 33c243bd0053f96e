// Sandbox and snapshot ids: 10 lowercase alphanumerics (fits `cpc<id>h` in IFNAMSIZ).
import { randomBytes } from 'node:crypto';

const ALPHABET = 'abcdefghijklmnopqrstuvwxyz0123456789';
export const SANDBOX_ID = /^[a-z0-9]{10}$/;

export function newSandboxId(): string {
  let id = '';
  for (const b of randomBytes(10)) id += ALPHABET[b % ALPHABET.length];
  return id;
}

export const newSnapshotId = (): string => `snap-${newSandboxId()}`;

/** A new sandbox id no live actor has (`taken` asks the actor system). */
export function freshSandboxId(taken: (id: string) => boolean): string {
  let id = newSandboxId();
  while (taken(id)) id = newSandboxId();
  return id;
}
