// Request bodies as JSON, bounded: shared by the edge and the surfaces mounted on it (E2B).
import type { IncomingMessage } from 'node:http';
import { badRequest, CoppiceError } from '../errors.ts';

/**
 * Read the body up to `limit` bytes and parse it as JSON; an empty body is `undefined`. Beyond the
 * limit: 413, and the rest of the body is read and discarded as it arrives (destroying the request
 * instead would reset the connection before the client could read the 413).
 */
export async function readJson(req: IncomingMessage, limit: number): Promise<unknown> {
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw new CoppiceError('payload_too_large', `body larger than ${limit} bytes`);
  const body = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    let over = false;
    req.on('data', (chunk: Buffer) => {
      if (over) return;
      size += chunk.length;
      if (size > limit) {
        over = true;
        chunks.length = 0;
        reject(new CoppiceError('payload_too_large', `body larger than ${limit} bytes`));
        return;
      }
      chunks.push(chunk);
    });
    req.once('end', () => resolve(Buffer.concat(chunks)));
    // The client went away mid-body ("aborted"): its fault, not an internal error (nobody is left to answer).
    req.once('error', (err) => reject(badRequest('body', `incomplete: the client closed the connection after ${size} bytes (${err.message})`)));
  });
  if (body.length === 0) return undefined;
  try {
    return JSON.parse(body.toString('utf8'));
  } catch (err) {
    throw badRequest('body', `malformed JSON (${(err as Error).message})`);
  }
}
