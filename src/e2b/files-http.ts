// envd's HTTP file transfer: `GET /files?path=&username=` (raw bytes) and `POST /files`
// (multipart parts named "file" whose filename is the path, or an application/octet-stream body
// for `?path=`). Both stream through a helper command inside the sandbox (see sandbox-fs.ts): the
// bytes never touch a host path, and a symlink resolves in the sandbox's own view.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createGunzip } from 'node:zlib';
import type { Reader, Stream } from '../actors/process-channel.ts';
import { CoppiceError } from '../errors.ts';
import { boundaryOf, parseMultipart } from './multipart.ts';
import { errorOf, FsError, pathArg, SCRIPTS, startHelper, absolute, type FsTarget, type Helper } from './sandbox-fs.ts';

const STDIN_HIGH_WATER = 1024 * 1024;
const STDERR_KEEP = 4096;

export function httpStatusOf(e: FsError): number {
  switch (e.kind) {
    case 'not_found':
      return 404;
    case 'permission':
      return 403;
    case 'invalid':
    case 'is_dir':
    case 'not_dir':
      return 400;
    case 'exists':
      return 409;
    default:
      return 500;
  }
}

/**
 * What the shell says about a path it cannot create (dash: "cannot create X: Directory
 * nonexistent" when a parent is a file or missing; "File name too long"; a symlink loop) is the
 * caller's mistake, not the gateway's: 400/403 instead of 500.
 */
export function fileMistake(e: FsError): FsError {
  if (e.kind !== 'internal') return e;
  if (/Permission denied|Operation not permitted|Read-only file system/i.test(e.message)) return new FsError('permission', e.message);
  if (/Directory nonexistent|File name too long|Too many levels of symbolic links|Not a directory|Text file busy|cannot create/i.test(e.message)) {
    return new FsError('invalid', e.message);
  }
  return e;
}

export function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.destroy();
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(text)) }).end(text);
}

export function sendFsError(res: ServerResponse, e: FsError): void {
  const status = httpStatusOf(e);
  sendJson(res, status, { code: status, message: e.message });
}

/** GET /files: stream the file's bytes; errors are JSON {code, message} (404 -> FileNotFoundError). */
export async function readFile(t: FsTarget, path: string, res: ServerResponse): Promise<void> {
  const h = await startHelper(t, SCRIPTS.read, [pathArg(path)], { timeoutMs: 0 });
  await new Promise<void>((resolve) => {
    let header = Buffer.alloc(0);
    let headerDone = false;
    let stderr = '';
    let pending: Buffer[] = [];
    let settled = false;
    const done = () => {
      if (settled) return;
      settled = true;
      resolve();
    };
    const startBody = (first: Buffer | null) => {
      if (!res.headersSent) res.writeHead(200, { 'content-type': 'application/octet-stream' });
      if (first && first.length) res.write(first);
    };
    const reader: Reader = {
      ready: () => !res.writableNeedDrain && !res.destroyed,
      data: (stream: Stream, chunk: Buffer) => {
        if (stream === 'stderr') {
          if (stderr.length < STDERR_KEEP) stderr += chunk.toString('utf8');
          return;
        }
        if (!headerDone) {
          header = Buffer.concat([header, chunk]);
          if (header.length < 3) return;
          headerDone = true;
          const rest = header.subarray(3);
          // Hold the first bytes until we know whether there are more (an empty file gets Content-Length: 0).
          if (rest.length) pending.push(rest);
          return;
        }
        if (pending.length) {
          startBody(Buffer.concat(pending));
          pending = [];
        } else if (!res.headersSent) startBody(null);
        res.write(chunk);
      },
      dropped: () => undefined,
      exit: (exit) => {
        if (!headerDone) {
          sendFsError(res, errorOf(exit, stderr));
          return done();
        }
        if (exit.exitCode !== 0) {
          // Failed mid-file: the status is long sent; cut the response so the client sees an error.
          res.destroy();
          return done();
        }
        if (!res.headersSent) {
          const body = Buffer.concat(pending);
          res.writeHead(200, { 'content-type': 'application/octet-stream', 'content-length': String(body.length) }).end(body);
        } else res.end();
        done();
      },
    };
    const sub = h.channel.attach(reader);
    res.on('drain', () => sub.pump());
    res.on('close', () => {
      sub.detach();
      // The client went away: stop reading the file.
      if (!h.channel.exit) h.send({ type: 'SIGNAL', signal: 'SIGKILL' });
      done();
    });
    sub.pump();
  });
}

/** Feed a byte stream to a helper's stdin (with backpressure), then close it. */
async function feed(h: Helper, source: AsyncIterable<Buffer | Uint8Array>): Promise<void> {
  try {
    for await (const chunk of source) {
      if (h.channel.exit) break;
      h.send({ type: 'STDIN', data: Buffer.from(chunk) });
      if (h.channel.stdinBacklog() > STDIN_HIGH_WATER) {
        await Promise.race([new Promise<void>((r) => h.channel.onceStdinDrained(r)), h.channel.exited]);
      }
    }
  } catch (err) {
    // The upload broke off: do not leave a helper waiting for the rest.
    h.send({ type: 'SIGNAL', signal: 'SIGKILL' });
    throw err;
  }
  h.send({ type: 'CLOSE_STDIN' });
}

export interface WrittenInfo {
  name: string;
  path: string;
  type: 'file';
}

/** Write one file from a byte stream; the result names it as the sandbox sees it. */
export async function writeFile(t: FsTarget, path: string, source: AsyncIterable<Buffer | Uint8Array>): Promise<WrittenInfo> {
  const h = await startHelper(t, SCRIPTS.write, [pathArg(path)], { stdin: true, capture: 64 * 1024, timeoutMs: 0 });
  await feed(h, source);
  const exit = await h.channel.exited;
  if (exit.exitCode !== 0) {
    const e = fileMistake(errorOf(exit, h.channel.output('stderr').toString('utf8')));
    throw new FsError(e.kind, `writing ${path}: ${e.message}`);
  }
  const pwd = h.channel.output('stdout').toString('utf8').trim() || '/';
  const abs = absolute(pwd, path);
  return { name: abs.split('/').pop() ?? abs, path: abs, type: 'file' };
}

/** Bodies above the gateway's --body-limit are 413; counted after decompression (a gzip bomb too). */
export const DEFAULT_UPLOAD_LIMIT = 32 * 1024 * 1024;

const tooLarge = (limit: number) => new CoppiceError('payload_too_large', `upload body larger than ${limit} bytes (--body-limit)`);

/** Pass bytes through, refusing the body once more than `limit` have come. */
async function* limited(source: AsyncIterable<Buffer | Uint8Array>, limit: number): AsyncGenerator<Buffer> {
  let size = 0;
  for await (const c of source) {
    size += c.length;
    if (size > limit) throw tooLarge(limit);
    yield Buffer.isBuffer(c) ? c : Buffer.from(c);
  }
}

/**
 * The request body, inflated when it is gzip (a corrupt stream is the client's mistake: 400).
 * Stopping early must not destroy the request: its socket still has to carry the error reply.
 */
async function* decoded(req: IncomingMessage): AsyncGenerator<Buffer> {
  const encoding = (req.headers['content-encoding'] ?? 'identity').toLowerCase();
  if (encoding === 'identity') {
    yield* req.iterator({ destroyOnReturn: false }) as AsyncIterable<Buffer>;
    return;
  }
  if (encoding !== 'gzip') throw new FsError('invalid', `unsupported Content-Encoding ${JSON.stringify(encoding)} (gzip or none)`);
  const z = createGunzip();
  const onError = (err: Error) => z.destroy(err);
  req.once('error', onError);
  req.pipe(z);
  try {
    yield* z as AsyncIterable<Buffer>;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code?.startsWith('Z_')) throw new FsError('invalid', `malformed gzip body: ${(err as Error).message}`);
    throw err;
  } finally {
    req.off('error', onError);
    req.unpipe(z);
    z.destroy();
  }
}

/**
 * POST /files: multipart ("file" parts, filename = path) or a raw body for `?path=`. Streamed part
 * by part into the sandbox (multipart.ts), never held whole; at most `limit` decoded bytes.
 */
export async function writeFiles(t: FsTarget, req: IncomingMessage, queryPath: string | null, limit = DEFAULT_UPLOAD_LIMIT): Promise<WrittenInfo[]> {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > limit) throw tooLarge(limit);
  const body = limited(decoded(req), limit);
  if (!type.startsWith('multipart/form-data')) {
    if (!queryPath) throw new FsError('invalid', 'path query parameter is required for a raw upload');
    return [await writeFile(t, queryPath, body)];
  }
  const boundary = boundaryOf(req.headers['content-type']!);
  if (!boundary) throw new FsError('invalid', 'multipart/form-data without a boundary parameter');
  const out: WrittenInfo[] = [];
  for await (const part of parseMultipart(body, boundary)) {
    if (part.name !== 'file' || part.filename === undefined) continue; // other fields are skipped
    const path = part.filename || queryPath;
    if (!path) throw new FsError('invalid', 'a file part has no filename and no path was given');
    out.push(await writeFile(t, path, part.body));
  }
  if (out.length === 0) throw new FsError('invalid', 'no "file" part in the multipart body');
  return out;
}
