// A streaming multipart/form-data reader (RFC 7578): parts are handed out one at a time with their
// body as a byte stream, so an upload of any size costs a few chunks of memory, never the whole
// body (undici's Response.formData() buffered it all: four 200 MB uploads took 2.6 GB).
// A part's body must be consumed (or is skipped) before the next part is read.
import { FsError } from './sandbox-fs.ts';

export interface Part {
  /** The form field name ("file" for E2B uploads). */
  name: string;
  /** The part's filename parameter (E2B puts the path there), if any. */
  filename: string | undefined;
  body: AsyncIterable<Buffer>;
}

const HEADER_LIMIT = 16 * 1024;
const CRLF = Buffer.from('\r\n');
const HEADER_END = Buffer.from('\r\n\r\n');

/** The boundary of a multipart/form-data Content-Type, or null. */
export function boundaryOf(contentType: string): string | null {
  const m = /;\s*boundary=(?:"([^"]{1,70})"|([^;\s]{1,70}))/i.exec(contentType);
  return m ? (m[1] ?? m[2]!) : null;
}

const bad = (why: string) => new FsError('invalid', `malformed multipart body: ${why}`);

/** Content-Disposition parameters (name, filename); quoted strings with backslash escapes. */
export function dispositionParams(value: string): Record<string, string> {
  const out: Record<string, string> = {};
  const re = /;\s*([a-z0-9*_-]+)\s*=\s*(?:"((?:[^"\\]|\\.)*)"|([^;]*))/gi;
  for (const m of value.matchAll(re)) {
    const key = m[1]!.toLowerCase();
    let v = m[2] !== undefined ? m[2].replace(/\\(.)/g, '$1') : m[3]!.trim();
    if (key.endsWith('*')) {
      // RFC 5987: charset'lang'percent-encoded
      const ext = /^[^']*'[^']*'(.*)$/.exec(v);
      try {
        v = decodeURIComponent(ext ? ext[1]! : v);
      } catch {
        continue;
      }
      out[key.slice(0, -1)] = v;
    } else if (!(key in out)) out[key] = v;
  }
  return out;
}

export async function* parseMultipart(source: AsyncIterable<Buffer | Uint8Array>, boundary: string): AsyncGenerator<Part> {
  const it = source[Symbol.asyncIterator]();
  let buf: Buffer = Buffer.alloc(0);
  let eof = false;
  const fill = async (): Promise<boolean> => {
    if (eof) return false;
    const r = await it.next();
    if (r.done) {
      eof = true;
      return false;
    }
    const chunk = Buffer.isBuffer(r.value) ? r.value : Buffer.from(r.value);
    buf = buf.length === 0 ? chunk : Buffer.concat([buf, chunk]);
    return true;
  };

  // Preamble, then the first delimiter (which has no CRLF before it when the body starts with it).
  const first = Buffer.from(`--${boundary}`);
  for (;;) {
    const i = buf.indexOf(first);
    if (i >= 0) {
      buf = buf.subarray(i + first.length);
      break;
    }
    buf = buf.subarray(Math.max(0, buf.length - first.length + 1));
    if (!(await fill())) throw bad('no opening boundary');
  }
  const delimiter = Buffer.from(`\r\n--${boundary}`);

  for (;;) {
    // After a delimiter: "--" ends the body, CRLF starts a part (transport padding tolerated).
    while (buf.length < 2) if (!(await fill())) throw bad('truncated after a boundary');
    if (buf[0] === 0x2d && buf[1] === 0x2d) {
      // Close delimiter: the epilogue is ignored, but read to the end so the request completes.
      while (await fill()) buf = Buffer.alloc(0);
      return;
    }
    let eol: number;
    while ((eol = buf.indexOf(CRLF)) < 0) {
      if (buf.length > 1024) throw bad('garbage after a boundary');
      if (!(await fill())) throw bad('truncated after a boundary');
    }
    buf = buf.subarray(eol + 2);

    // Header lines up to an empty line; a part without headers starts with that empty line.
    while (buf.length < 2) if (!(await fill())) throw bad('truncated part headers');
    let headerText = '';
    if (buf[0] === 0x0d && buf[1] === 0x0a) buf = buf.subarray(2);
    else {
      let end: number;
      while ((end = buf.indexOf(HEADER_END)) < 0) {
        if (buf.length > HEADER_LIMIT) throw bad(`part headers larger than ${HEADER_LIMIT} bytes`);
        if (!(await fill())) throw bad('truncated part headers');
      }
      if (end > HEADER_LIMIT) throw bad(`part headers larger than ${HEADER_LIMIT} bytes`);
      headerText = buf.subarray(0, end).toString('utf8');
      buf = buf.subarray(end + 4);
    }
    let disposition = '';
    for (const line of headerText.split('\r\n')) {
      const colon = line.indexOf(':');
      if (colon > 0 && line.slice(0, colon).trim().toLowerCase() === 'content-disposition') disposition = line.slice(colon + 1);
    }
    const params = dispositionParams(disposition);

    let done = false;
    async function* body(): AsyncGenerator<Buffer> {
      for (;;) {
        const i = buf.indexOf(delimiter);
        if (i >= 0) {
          const out = buf.subarray(0, i);
          buf = buf.subarray(i + delimiter.length);
          done = true;
          if (out.length > 0) yield out;
          return;
        }
        // Keep what could be the start of a delimiter split across chunks.
        const keep = Math.min(buf.length, delimiter.length - 1);
        const out = buf.subarray(0, buf.length - keep);
        buf = buf.subarray(buf.length - keep);
        if (out.length > 0) yield out;
        if (!(await fill())) throw bad('truncated part body');
      }
    }
    const part = body();
    yield { name: params.name ?? '', filename: params.filename, body: part };
    // Whatever the consumer did not read is skipped.
    if (!done) for await (const _ of part) void _;
    if (!done) throw bad('part body not finished');
  }
}
