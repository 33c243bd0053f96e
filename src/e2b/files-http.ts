// envd's HTTP file transfer: `GET /files?path=&username=` (raw bytes) and `POST /files`
// (multipart parts named "file" whose filename is the path, or an application/octet-stream body
// for `?path=`). Both stream through a helper command inside the sandbox (see sandbox-fs.ts): the
// bytes never touch a host path, and a symlink resolves in the sandbox's own view.
import type { IncomingMessage, ServerResponse } from 'node:http';
import { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Reader, Stream } from '../actors/process-channel.ts';
import { errorOf, FsError, pathArg, SCRIPTS, startHelper, absolute, type FsTarget, type Helper } from './sandbox-fs.ts';

/** Multipart uploads are parsed in memory; bigger files should use the streamed octet-stream form. */
export const MULTIPART_LIMIT = 256 * 1024 * 1024;
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
    const e = errorOf(exit, h.channel.output('stderr').toString('utf8'));
    throw new FsError(e.kind, `writing ${path}: ${e.message}`);
  }
  const pwd = h.channel.output('stdout').toString('utf8').trim() || '/';
  const abs = absolute(pwd, path);
  return { name: abs.split('/').pop() ?? abs, path: abs, type: 'file' };
}

/** POST /files: multipart ("file" parts, filename = path) or a raw body for `?path=`. */
export async function writeFiles(t: FsTarget, req: IncomingMessage, queryPath: string | null): Promise<WrittenInfo[]> {
  const type = (req.headers['content-type'] ?? '').toLowerCase();
  let body: Readable = req;
  if ((req.headers['content-encoding'] ?? '').toLowerCase() === 'gzip') body = req.pipe(createGunzip());
  if (!type.startsWith('multipart/form-data')) {
    if (!queryPath) throw new FsError('invalid', 'path query parameter is required for a raw upload');
    return [await writeFile(t, queryPath, body)];
  }
  const declared = Number(req.headers['content-length'] ?? 0);
  if (declared > MULTIPART_LIMIT) throw new FsError('invalid', `multipart upload larger than ${MULTIPART_LIMIT} bytes: use an application/octet-stream upload`);
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const c of body) {
    size += (c as Buffer).length;
    if (size > MULTIPART_LIMIT) throw new FsError('invalid', `multipart upload larger than ${MULTIPART_LIMIT} bytes: use an application/octet-stream upload`);
    chunks.push(c as Buffer);
  }
  let form: FormData;
  try {
    form = await new Response(Buffer.concat(chunks), { headers: { 'content-type': req.headers['content-type']! } }).formData();
  } catch (err) {
    throw new FsError('invalid', `malformed multipart body: ${(err as Error).message}`);
  }
  const out: WrittenInfo[] = [];
  for (const [name, value] of form) {
    if (name !== 'file' || typeof value === 'string') continue;
    const path = value.name || queryPath;
    if (!path) throw new FsError('invalid', 'a file part has no filename and no path was given');
    out.push(await writeFile(t, path, Readable.fromWeb(value.stream() as import('node:stream/web').ReadableStream<Uint8Array>)));
  }
  if (out.length === 0) throw new FsError('invalid', 'no "file" part in the multipart body');
  return out;
}
