// API keys: `Authorization: Bearer <key>` or `X-API-KEY: <key>`, compared in constant time.
import { createHash, timingSafeEqual } from 'node:crypto';
import type { IncomingMessage } from 'node:http';

const digest = (s: string) => createHash('sha256').update(s).digest();

export function presentedKey(req: IncomingMessage): string | undefined {
  // The scheme is case-insensitive (RFC 9110 11.1): "bearer" and "BEARER" are "Bearer".
  const m = /^bearer\s+(.+)$/i.exec(req.headers.authorization ?? '');
  if (m) return m[1]!.trim();
  const x = req.headers['x-api-key'];
  return Array.isArray(x) ? x[0] : x;
}

/** Hashing first makes the comparison length-independent as well as constant-time. */
export function createKeyCheck(keys: string[]): (presented: string | undefined) => boolean {
  const digests = keys.map(digest);
  return (presented) => {
    if (!presented) return false;
    const d = digest(presented);
    let ok = false;
    for (const k of digests) ok = timingSafeEqual(d, k) || ok;
    return ok;
  };
}
