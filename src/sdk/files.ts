// `sandbox.files`: read, write, list, exists, remove, makeDir — E2B's shape, over the routes the
// gateway already serves on its own port for E2B's envd (docs/e2b.md): `GET/POST /files` for the
// bytes and Connect RPC (JSON codec, unary) `filesystem.Filesystem/*` for the rest, addressed to
// a sandbox by the `E2b-Sandbox-Id` header and opened by the gateway's API key. Every operation
// runs inside the sandbox as its user, so paths and symlinks resolve in the sandbox's own view and
// its permissions apply (a refusal is a PermissionDeniedError).
import { errorFromBody, type CoppiceApiError } from './errors.ts';
import { request, type Conn } from './http.ts';

export interface EntryInfo {
  name: string;
  type: 'file' | 'dir' | 'symlink';
  /** Absolute path inside the sandbox. */
  path: string;
  size: number;
  /** Permission bits, e.g. 0o644. */
  mode: number;
  /** ls-style, e.g. "-rw-r--r--". */
  permissions: string;
  owner: string;
  group: string;
  modifiedTime: Date;
  symlinkTarget?: string;
}

export interface WriteInfo {
  name: string;
  path: string;
  type: 'file';
}

export interface FileOptions {
  /** Act as this user inside the sandbox (default: the template's user). */
  user?: string;
  /** Deadline for the transfer in ms (default: the client's requestTimeoutMs; 0 = none). */
  requestTimeoutMs?: number;
}

const CONNECT_TO_CODE: Record<string, [number, string]> = {
  not_found: [404, 'not_found'],
  permission_denied: [403, 'permission_denied'],
  invalid_argument: [400, 'bad_request'],
  already_exists: [409, 'conflict'],
  failed_precondition: [409, 'conflict'],
  unauthenticated: [401, 'unauthorized'],
  unimplemented: [501, 'unsupported'],
  deadline_exceeded: [504, 'timeout'],
  resource_exhausted: [429, 'too_many_requests'],
  unavailable: [502, 'backend_failed'],
};

const STATUS_TO_CODE: Record<number, string> = {
  400: 'bad_request',
  401: 'unauthorized',
  403: 'permission_denied',
  404: 'not_found',
  405: 'method_not_allowed',
  409: 'conflict',
  413: 'payload_too_large',
  415: 'bad_request',
  429: 'too_many_requests',
  500: 'internal',
  501: 'unsupported',
  502: 'backend_failed',
  504: 'timeout',
};

/** envd answers `{code: <status> | <connect code>, message}`: the SDK's typed error, with the gateway's code. */
async function envdError(res: Response): Promise<CoppiceApiError> {
  const text = await res.text().catch(() => '');
  let body: { code?: unknown; message?: unknown } = {};
  try {
    body = JSON.parse(text);
  } catch {
    body = { message: text || `HTTP ${res.status}` };
  }
  const message = typeof body.message === 'string' ? body.message : `HTTP ${res.status}`;
  let [status, code] = typeof body.code === 'string' && CONNECT_TO_CODE[body.code] ? CONNECT_TO_CODE[body.code]! : [res.status, STATUS_TO_CODE[res.status] ?? `http_${res.status}`];
  // envd's 502 is "no running sandbox there": the REST API's 404 / 409 for the same cases.
  if (res.status === 502 && / was not found$/.test(message)) [status, code] = [404, 'not_found'];
  else if (res.status === 502 && / not running$/.test(message)) [status, code] = [409, 'conflict'];
  return errorFromBody(status, { error: code, message });
}

interface RawEntry {
  name?: string;
  type?: string;
  path?: string;
  size?: string | number;
  mode?: number;
  permissions?: string;
  owner?: string;
  group?: string;
  modifiedTime?: string;
  symlinkTarget?: string;
}

function entryOf(e: RawEntry): EntryInfo {
  return {
    name: e.name ?? '',
    type: e.type === 'FILE_TYPE_DIRECTORY' ? 'dir' : e.type === 'FILE_TYPE_SYMLINK' ? 'symlink' : 'file',
    path: e.path ?? '',
    size: Number(e.size ?? 0),
    mode: e.mode ?? 0,
    permissions: e.permissions ?? '',
    owner: e.owner ?? '',
    group: e.group ?? '',
    modifiedTime: new Date(e.modifiedTime ?? 0),
    ...(e.symlinkTarget !== undefined ? { symlinkTarget: e.symlinkTarget } : {}),
  };
}

export class Files {
  constructor(
    private readonly conn: Conn,
    private readonly sandboxID: string,
  ) {}

  /** The file's contents as UTF-8 text (default) or as bytes. */
  read(path: string, opts?: FileOptions & { format?: 'text' }): Promise<string>;
  read(path: string, opts: FileOptions & { format: 'bytes' }): Promise<Uint8Array>;
  async read(path: string, opts: FileOptions & { format?: 'text' | 'bytes' } = {}): Promise<string | Uint8Array> {
    const q = new URLSearchParams({ path, ...(opts.user ? { username: opts.user } : {}) });
    const res = await request(this.conn, 'GET', `/files?${q}`, { headers: this.headers(), timeoutMs: opts.requestTimeoutMs });
    if (!res.ok) throw await envdError(res);
    const bytes = new Uint8Array(await res.arrayBuffer());
    return opts.format === 'bytes' ? bytes : new TextDecoder().decode(bytes);
  }

  /** Create or replace a file (parent directories are made); text is written as UTF-8. */
  async write(path: string, data: string | Uint8Array | ArrayBuffer, opts: FileOptions = {}): Promise<WriteInfo> {
    const q = new URLSearchParams({ path, ...(opts.user ? { username: opts.user } : {}) });
    const body = typeof data === 'string' ? new TextEncoder().encode(data) : data instanceof Uint8Array ? data : new Uint8Array(data);
    const res = await request(this.conn, 'POST', `/files?${q}`, {
      headers: { ...this.headers(), 'content-type': 'application/octet-stream' },
      body,
      timeoutMs: opts.requestTimeoutMs,
    });
    if (!res.ok) throw await envdError(res);
    const written = (await res.json()) as WriteInfo[];
    return written[0]!;
  }

  /** A directory's entries; `depth` > 1 descends (entries of subdirectories follow, with their paths). */
  async list(path: string, opts: FileOptions & { depth?: number } = {}): Promise<EntryInfo[]> {
    const r = await this.rpc<{ entries?: RawEntry[] }>('ListDir', { path, depth: opts.depth ?? 1 }, opts);
    return (r.entries ?? []).map(entryOf);
  }

  /** One path's entry (NotFoundError when there is nothing there). */
  async getInfo(path: string, opts: FileOptions = {}): Promise<EntryInfo> {
    const r = await this.rpc<{ entry?: RawEntry }>('Stat', { path }, opts);
    return entryOf(r.entry ?? {});
  }

  async exists(path: string, opts: FileOptions = {}): Promise<boolean> {
    try {
      await this.getInfo(path, opts);
      return true;
    } catch (err) {
      if ((err as CoppiceApiError).code === 'not_found') return false;
      throw err;
    }
  }

  /** Remove a file or a directory with its contents. */
  async remove(path: string, opts: FileOptions = {}): Promise<void> {
    await this.rpc('Remove', { path }, opts);
  }

  /** Make a directory (and its parents): false when it already exists. */
  async makeDir(path: string, opts: FileOptions = {}): Promise<boolean> {
    try {
      await this.rpc('MakeDir', { path }, opts);
      return true;
    } catch (err) {
      if ((err as CoppiceApiError).code === 'conflict' && /exists/i.test((err as Error).message)) return false;
      throw err;
    }
  }

  private headers(): Record<string, string> {
    return { 'e2b-sandbox-id': this.sandboxID, 'x-api-key': this.conn.apiKey };
  }

  /** One unary Connect call with the JSON codec; the user rides in Basic auth, as E2B's SDK sends it. */
  private async rpc<T>(method: string, body: unknown, opts: FileOptions): Promise<T> {
    const res = await request(this.conn, 'POST', `/filesystem.Filesystem/${method}`, {
      headers: {
        ...this.headers(),
        'content-type': 'application/json',
        'connect-protocol-version': '1',
        ...(opts.user ? { authorization: `Basic ${btoa(`${opts.user}:`)}` } : {}),
      },
      body: JSON.stringify(body),
      timeoutMs: opts.requestTimeoutMs,
    });
    if (!res.ok) throw await envdError(res);
    return (await res.json()) as T;
  }
}
