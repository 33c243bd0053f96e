// WatchDir by polling INSIDE the sandbox: one long-running helper lists the directory (stat
// records, as sandbox-fs.ts) every WATCH_INTERVAL, and the gateway diffs consecutive listings into
// create / write / chmod / remove events. No inotify: it needs no tool the templates lack, works the
// same on both backends, and — like every file operation here — only sees the sandbox's own view.
// A new file with content is reported as create + write, as inotify sees it.
// Limits: changes are seen at the polling interval, and a rewrite that keeps both the size and the
// (1 s) mtime of a file is not reported; a rename is reported as remove + create.
import { Code, ConnectError } from '@connectrpc/connect';
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import { ChannelStream } from './channel-stream.ts';
import { create } from '@bufbuild/protobuf';
import { EventType, WatchDirResponseSchema, type WatchDirRequest } from './gen/filesystem/filesystem_pb.ts';
import { asConnectError } from './rpc-errors.ts';
import { errorOf, FsError, parseRecords, pathArg, startHelper, type FsEntry, type FsTarget } from './sandbox-fs.ts';

export const WATCH_INTERVAL_S = 0.5;
/** One listing larger than this ends the watch (the gateway would hold and diff it twice a second). */
const MAX_LISTING = 32 * 1024 * 1024;

const WATCH_SCRIPT = `
T=$1; p=$2; r=$3; iv=$4
if [ ! -e "$p" ]; then printf 'no such file or directory: %s\\n' "$p" >&2; exit 40; fi
if [ ! -d "$p" ]; then printf 'not a directory: %s\\n' "$p" >&2; exit 41; fi
cd "$p" 2>/dev/null || { printf 'permission denied: %s\\n' "$p" >&2; exit 44; }
printf '%sP%s\\n' "$T" "$PWD"
while :; do
  if [ "$r" = 1 ]; then find . -mindepth 1 -exec stat -c "\${T}E%f %s %a %U %G %Y %A %n" -- {} +
  else find . -mindepth 1 -maxdepth 1 -exec stat -c "\${T}E%f %s %a %U %G %Y %A %n" -- {} +; fi
  printf '%sS\\n' "$T"
  sleep "$iv"
done
`;

type Snapshot = Map<string, FsEntry>;

export interface WatchEvent {
  name: string;
  type: EventType;
}

/** Events that turn `before` into `after`; names are relative to the watched directory. */
export function diffSnapshots(before: Snapshot, after: Snapshot, base: string): WatchEvent[] {
  const rel = (p: string) => posix.relative(base, p);
  const out: WatchEvent[] = [];
  for (const [p, a] of after) {
    const b = before.get(p);
    if (!b || b.type !== a.type) {
      if (b) out.push({ name: rel(p), type: EventType.REMOVE });
      out.push({ name: rel(p), type: EventType.CREATE });
      // A new file with content was also written (inotify, hence E2B, reports CREATE then WRITE).
      if (a.type === 'file' && a.size > 0) out.push({ name: rel(p), type: EventType.WRITE });
    } else if (b.size !== a.size || b.modifiedTime.getTime() !== a.modifiedTime.getTime()) {
      out.push({ name: rel(p), type: EventType.WRITE });
    } else if (b.mode !== a.mode || b.owner !== a.owner || b.group !== a.group) {
      out.push({ name: rel(p), type: EventType.CHMOD });
    }
  }
  for (const p of before.keys()) if (!after.has(p)) out.push({ name: rel(p), type: EventType.REMOVE });
  return out;
}

export async function* watchDir(t: FsTarget, req: Pick<WatchDirRequest, 'path' | 'recursive' | 'includeEntry'>, signal: AbortSignal) {
  if (req.includeEntry) throw new ConnectError('watch events with entries are not supported by coppice', Code.Unimplemented);
  const token = `@@cpc${randomBytes(8).toString('hex')}@@`;
  let h;
  try {
    h = await startHelper(t, WATCH_SCRIPT, [token, pathArg(req.path), req.recursive ? '1' : '0', String(WATCH_INTERVAL_S)], { timeoutMs: 0 });
  } catch (err) {
    throw asConnectError(err);
  }
  const stream = new ChannelStream(h.channel, 0);
  const sep = Buffer.from(`${token}S\n`);
  let buf = Buffer.alloc(0);
  let stderr = '';
  let base: string | null = null;
  let previous: Snapshot | null = null;
  try {
    for await (const item of stream.items(signal, 15_000)) {
      if (item.kind === 'keepalive') {
        if (base !== null) yield create(WatchDirResponseSchema, { event: { case: 'keepalive', value: {} } });
        continue;
      }
      if (item.kind === 'end') {
        if (base === null) throw asConnectError(errorOf(item.exit, stderr));
        throw new ConnectError(`watcher ended: ${errorOf(item.exit, stderr).message}`, Code.Aborted);
      }
      if (item.stream === 'stderr') {
        if (stderr.length < 4096) stderr += Buffer.from(item.bytes).toString('utf8');
        continue;
      }
      buf = Buffer.concat([buf, item.bytes]);
      if (buf.length > MAX_LISTING) throw new ConnectError(`directory too large to watch (a listing exceeds ${MAX_LISTING} bytes)`, Code.ResourceExhausted);
      if (base === null) {
        const nl = buf.indexOf(10);
        if (nl < 0) continue;
        const parsed = parseRecords(buf.subarray(0, nl + 1), token);
        base = parsed.pwd;
        buf = buf.subarray(nl + 1);
        yield create(WatchDirResponseSchema, { event: { case: 'start', value: {} } });
      }
      for (;;) {
        const end = buf.indexOf(sep);
        if (end < 0) break;
        const { entries } = parseRecords(Buffer.concat([Buffer.from(`${token}P${base}\n`), buf.subarray(0, end)]), token);
        buf = buf.subarray(end + sep.length);
        const snap: Snapshot = new Map(entries.map((e) => [e.path, e]));
        if (previous) {
          for (const ev of diffSnapshots(previous, snap, base)) {
            yield create(WatchDirResponseSchema, { event: { case: 'filesystem', value: { name: ev.name, type: ev.type } } });
          }
        }
        previous = snap;
      }
    }
  } catch (err) {
    throw err instanceof FsError ? asConnectError(err) : err;
  } finally {
    stream.close();
    if (!h.channel.exit) h.send({ type: 'SIGNAL', signal: 'SIGKILL' });
  }
}
