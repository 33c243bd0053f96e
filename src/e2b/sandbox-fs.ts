// File access for the E2B envd surface, done INSIDE the sandbox: every operation is a small POSIX
// shell command run through the gateway's exec (runc exec on jail, SSH on bhyve), as the calling
// user. Paths are therefore resolved by the sandbox's own kernel view — its mount namespace, its
// root, its permissions — so a symlink planted in the sandbox (`ln -s /etc/shadow x`) leads to the
// sandbox's own /etc/shadow (or to "permission denied"), never to a file of the host. The gateway
// never opens a path of a sandbox's root filesystem from the host side.
//
// Works with GNU coreutils and busybox (stat -c, find -exec {} +, mv -T, readlink).
// Bytes go through stdin/stdout untouched (binary-safe). Metadata comes back as records, each led
// by a random per-call token (so file names with spaces or newlines cannot be mistaken for
// structure): <T>P<pwd>\n, <T>E<hexmode> <size> <octal> <user> <group> <mtime> <ls-mode> <path>\n,
// <T>L<path>\0<link text>\0<resolved target>\0<target's hexmode, empty if dangling>\n.
import { randomBytes } from 'node:crypto';
import { posix } from 'node:path';
import type { Gateway } from '../actors/gateway.ts';
import type { ProcessChannel } from '../actors/process-channel.ts';
import type { RunnerCommand } from '../actors/types.ts';
import type { ProcessExit } from '../actors/types.ts';

export type FsErrorKind = 'not_found' | 'not_dir' | 'is_dir' | 'exists' | 'permission' | 'invalid' | 'internal';

export class FsError extends Error {
  constructor(
    readonly kind: FsErrorKind,
    message: string,
  ) {
    super(message);
    this.name = 'FsError';
  }
}

export interface FsEntry {
  name: string;
  type: 'file' | 'dir' | 'symlink';
  path: string;
  size: number;
  /** Permission bits (e.g. 0o644). */
  mode: number;
  /** ls-style, e.g. "-rw-r--r--". */
  permissions: string;
  owner: string;
  group: string;
  modifiedTime: Date;
  symlinkTarget?: string;
}

/** Who runs the helper and where: `user` undefined = the sandbox's default user. */
export interface FsTarget {
  gw: Gateway;
  sandboxId: string;
  user: string | undefined;
}

/** Exit codes the scripts use for the errors callers must tell apart. */
const EXIT: Record<number, FsErrorKind> = { 40: 'not_found', 41: 'not_dir', 42: 'is_dir', 43: 'exists', 44: 'permission', 45: 'invalid' };

/** Helpers get a plain environment of their own whatever the sandbox's envVars say. */
export const HELPER_ENV = { PATH: '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin', LC_ALL: 'C' };

const PRELUDE = `
fail() { c=$1; shift; printf '%s\\n' "$*" >&2; exit "$c"; }
exists() { [ -e "$1" ] || [ -L "$1" ]; }
link() { printf '%sL%s\\0%s\\0%s\\0%s\\n' "$T" "$1" "$(readlink -- "$1")" "$(readlink -f -- "$1" 2>/dev/null)" "$(stat -L -c %f -- "$1" 2>/dev/null)"; }
entry() {
  stat -c "\${T}E%f %s %a %U %G %Y %A %n" -- "$1" || return 1
  if [ -L "$1" ]; then link "$1"; fi
}
`;

export const SCRIPTS = {
  stat: `${PRELUDE}
T=$1; p=$2
printf '%sP%s\\n' "$T" "$PWD"
exists "$p" || fail 40 "no such file or directory: $p"
entry "$p" || exit 1
`,
  list: `${PRELUDE}
T=$1; p=$2; d=$3
[ -e "$p" ] || fail 40 "no such file or directory: $p"
[ -d "$p" ] || fail 41 "not a directory: $p"
cd "$p" 2>/dev/null || fail 44 "permission denied: $p"
printf '%sP%s\\n' "$T" "$PWD"
find . -mindepth 1 -maxdepth "$d" -exec stat -c "\${T}E%f %s %a %U %G %Y %A %n" -- {} +
find . -mindepth 1 -maxdepth "$d" -type l -exec sh -c 'T=$1; shift; for l; do printf "%sL%s\\0%s\\0%s\\0%s\\n" "$T" "$l" "$(readlink -- "$l")" "$(readlink -f -- "$l" 2>/dev/null)" "$(stat -L -c %f -- "$l" 2>/dev/null)"; done' sh "$T" {} +
exit 0
`,
  mkdir: `${PRELUDE}
T=$1; p=$2
[ -d "$p" ] && fail 43 "directory already exists: $p"
exists "$p" && fail 43 "path already exists and is not a directory: $p"
mkdir -p -- "$p" || exit 1
printf '%sP%s\\n' "$T" "$PWD"
entry "$p" || exit 1
`,
  move: `${PRELUDE}
T=$1; s=$2; d=$3
exists "$s" || fail 40 "no such file or directory: $s"
mkdir -p -- "$(dirname -- "$d")" || exit 1
mv -f -T -- "$s" "$d" || exit 1
printf '%sP%s\\n' "$T" "$PWD"
entry "$d" || exit 1
`,
  /** A path that is not there is removed already (as E2B); rm -f still fails on a permission problem. */
  remove: `${PRELUDE}
p=$1
rm -rf -- "$p" || exit 1
`,
  /** Prints "ok\\n" once the file is known readable, then its bytes. */
  read: `${PRELUDE}
p=$1
exists "$p" || fail 40 "no such file or directory: $p"
[ -e "$p" ] || fail 40 "dangling symbolic link: $p"
[ -d "$p" ] && fail 42 "is a directory: $p"
[ -r "$p" ] || fail 44 "permission denied: $p"
printf 'ok\\n'
exec cat -- "$p"
`,
  /**
   * Writes stdin to the file (parents created); prints the working directory. E2B's envd (root)
   * creates missing parents owned by the user anywhere; here the user creates them, and where the
   * user may not (e.g. /0) but may become root without a password (sudo -n, as in the base
   * template), they are made through sudo and given to the user: no right the user lacks. Else a
   * permission error.
   */
  write: `${PRELUDE}
p=$1
d=$(dirname -- "$p")
if [ ! -d "$d" ] && ! err=$(mkdir -p -- "$d" 2>&1); then
  case $err in *"Not a directory"*|*"File exists"*) fail 41 "not a directory: a parent of $p" ;; esac
  top=$d
  while [ ! -e "$(dirname -- "$top")" ]; do top=$(dirname -- "$top"); done
  if ! { sudo -n true && sudo -n mkdir -p -- "$d" && sudo -n chown -R -- "$(id -u):$(id -g)" "$top"; } >/dev/null 2>&1; then
    fail 44 "permission denied: cannot create directory $d"
  fi
fi
[ -d "$p" ] && fail 42 "is a directory: $p"
cat > "$p" || exit 1
printf '%s\\n' "$PWD"
`,
  /** The default user of a sandbox whose backend has no notion of one (bhyve): E2B's "user" if it exists. */
  defaultUser: `if id user >/dev/null 2>&1; then echo user; else echo root; fi`,
} as const;

/** A path argument that can never be taken for an option (relative paths get "./"). */
export function pathArg(p: string): string {
  if (p === '') throw new FsError('invalid', 'path is empty');
  if (p.includes('\0')) throw new FsError('invalid', 'path contains a NUL byte');
  return p.startsWith('/') || p.startsWith('./') || p.startsWith('../') ? p : `./${p}`;
}

/** The error a failed helper stands for: its agreed exit code, else what its stderr says. */
export function errorOf(exit: ProcessExit, stderr: string): FsError {
  const text = stderr.trim().split('\n').slice(-3).join('; ') || exitText(exit);
  const kind = exit.exitCode !== null ? EXIT[exit.exitCode] : undefined;
  if (kind) return new FsError(kind, text);
  if (/Permission denied|Operation not permitted|Read-only file system/i.test(stderr)) return new FsError('permission', text);
  if (/No such file or directory/i.test(stderr)) return new FsError('not_found', text);
  if (/Not a directory/i.test(stderr)) return new FsError('not_dir', text);
  if (/Is a directory/i.test(stderr)) return new FsError('is_dir', text);
  if (/File exists|Directory not empty/i.test(stderr)) return new FsError('exists', text);
  // The sandbox refused the bytes (a /proc file, a full disk, a too-large file): the caller's
  // request cannot be done there, not a gateway fault.
  if (/write error|Invalid argument|Input\/output error|No space left|File too large|Bad address/i.test(stderr)) {
    return new FsError('invalid', text);
  }
  return new FsError('internal', text);
}

function exitText(exit: ProcessExit): string {
  if (exit.error) return exit.error.message;
  if (exit.signal) return `helper killed by ${exit.signal}${exit.reason ? ` (${exit.reason})` : ''}`;
  return `helper exited with ${exit.exitCode}`;
}

export interface Helper {
  channel: ProcessChannel;
  send(cmd: RunnerCommand): void;
}

/** Start a helper script as the target user; `stdin` keeps stdin open for streaming writes. */
export function startHelper(t: FsTarget, script: string, args: string[], opts: { stdin?: boolean; timeoutMs?: number; capture?: number } = {}): Promise<Helper> {
  return t.gw.startHelper(
    t.sandboxId,
    {
      argv: ['/bin/sh', '-c', script, 'sh', ...args],
      env: HELPER_ENV,
      user: t.user,
      timeoutMs: opts.timeoutMs ?? 60_000,
      keepStdinOpen: opts.stdin ?? false,
    },
    // Buffered helpers read `output()`; streaming ones attach a reader to the (bounded) ring.
    { captureLimit: opts.capture ?? 0, replayLimit: 256 * 1024, window: 1024 * 1024 },
  );
}

/** Run a helper to completion; stdout must fit in `capture` bytes. */
export async function runHelper(t: FsTarget, script: string, args: string[], capture = 64 * 1024 * 1024, timeoutMs = 120_000): Promise<Buffer> {
  const h = await startHelper(t, script, args, { capture: capture + 1, timeoutMs });
  const exit = await h.channel.exited;
  const stdout = h.channel.output('stdout');
  const stderr = h.channel.output('stderr').toString('utf8');
  if (exit.exitCode !== 0) throw errorOf(exit, stderr);
  if (h.channel.truncated) throw new FsError('internal', `listing larger than ${capture} bytes`);
  return stdout;
}

// ---- record parsing ----

interface Parsed {
  pwd: string;
  entries: FsEntry[];
}

function splitBuffer(buf: Buffer, sep: Buffer): Buffer[] {
  const parts: Buffer[] = [];
  let at = 0;
  for (;;) {
    const i = buf.indexOf(sep, at);
    if (i < 0) break;
    parts.push(buf.subarray(at, i));
    at = i + sep.length;
  }
  parts.push(buf.subarray(at));
  return parts;
}

const TYPE_BITS = 0o170000;
const S_IFDIR = 0o040000;
const S_IFLNK = 0o120000;

/** Parse the records of one helper run; entry paths are made absolute against its working directory. */
export function parseRecords(out: Buffer, token: string): Parsed {
  let pwd = '/';
  const entries: FsEntry[] = [];
  const links = new Map<string, { text: string; resolved: string; hexMode: string }>();
  const raw: { fields: string[]; path: string }[] = [];
  const parts = splitBuffer(out, Buffer.from(token));
  for (const part of parts.slice(1)) {
    const body = part.at(-1) === 10 ? part.subarray(0, -1) : part;
    const kind = String.fromCharCode(body[0] ?? 0);
    const rest = body.subarray(1);
    if (kind === 'P') pwd = rest.toString('utf8') || '/';
    else if (kind === 'L') {
      const [path, text = '', resolved = '', hexMode = ''] = splitBuffer(rest, Buffer.from([0])).map((b) => b.toString('utf8'));
      if (path !== undefined) links.set(path, { text, resolved, hexMode });
    } else if (kind === 'E') {
      const text = rest.toString('utf8');
      const fields: string[] = [];
      let at = 0;
      for (let i = 0; i < 7; i++) {
        const sp = text.indexOf(' ', at);
        if (sp < 0) break;
        fields.push(text.slice(at, sp));
        at = sp + 1;
      }
      if (fields.length === 7) raw.push({ fields, path: text.slice(at) });
    }
  }
  for (const { fields, path } of raw) {
    const [hexMode, size, octal, owner, group, mtime, permissions] = fields as [string, string, string, string, string, string, string];
    const rawMode = parseInt(hexMode, 16);
    const kindBits = rawMode & TYPE_BITS;
    const abs = absolute(pwd, path);
    const entry: FsEntry = {
      name: posix.basename(abs),
      type: kindBits === S_IFDIR ? 'dir' : kindBits === S_IFLNK ? 'symlink' : 'file',
      path: abs,
      size: Number(size),
      mode: parseInt(octal, 8),
      permissions,
      owner,
      group,
      modifiedTime: new Date(Number(mtime) * 1000),
    };
    // A symlink is reported as E2B's envd does: its target's type and the target's absolute path;
    // a dangling one stays a symlink, its text made absolute against the link's directory.
    const link = links.get(path);
    if (link !== undefined) {
      const targetBits = link.hexMode ? parseInt(link.hexMode, 16) & TYPE_BITS : null;
      if (targetBits !== null && link.resolved) {
        entry.type = targetBits === S_IFDIR ? 'dir' : 'file';
        entry.symlinkTarget = link.resolved;
      } else {
        entry.symlinkTarget = posix.resolve(posix.dirname(abs), link.text);
      }
    }
    entries.push(entry);
  }
  return { pwd, entries };
}

/** `p` as the sandbox sees it from `pwd` ("./a/b" and "a/b" -> pwd/a/b), normalized. */
export function absolute(pwd: string, p: string): string {
  return posix.resolve(pwd, p);
}

const newToken = () => `@@cpc${randomBytes(8).toString('hex')}@@`;

// ---- operations ----

export async function stat(t: FsTarget, path: string): Promise<FsEntry> {
  const token = newToken();
  const { entries } = parseRecords(await runHelper(t, SCRIPTS.stat, [token, pathArg(path)]), token);
  if (!entries[0]) throw new FsError('internal', `no information about ${path}`);
  return entries[0];
}

export async function listDir(t: FsTarget, path: string, depth: number): Promise<FsEntry[]> {
  const token = newToken();
  const d = Math.max(1, Math.min(depth || 1, 64));
  const { entries } = parseRecords(await runHelper(t, SCRIPTS.list, [token, pathArg(path), String(d)]), token);
  // Sorted by path (E2B's envd walks the tree in lexical order), not in directory order.
  return entries.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
}

export async function makeDir(t: FsTarget, path: string): Promise<FsEntry> {
  const token = newToken();
  const { entries } = parseRecords(await runHelper(t, SCRIPTS.mkdir, [token, pathArg(path)]), token);
  if (!entries[0]) throw new FsError('internal', `no information about ${path}`);
  return entries[0];
}

export async function move(t: FsTarget, source: string, destination: string): Promise<FsEntry> {
  const token = newToken();
  const { entries } = parseRecords(await runHelper(t, SCRIPTS.move, [token, pathArg(source), pathArg(destination)]), token);
  if (!entries[0]) throw new FsError('internal', `no information about ${destination}`);
  return entries[0];
}

export async function remove(t: FsTarget, path: string): Promise<void> {
  await runHelper(t, SCRIPTS.remove, [pathArg(path)]);
}
