// Parsers for the few FreeBSD tool outputs the driver reads. Output formats are taken from the
// manuals and from pot/Bastille/runj; UNTESTED ON REAL FREEBSD.

/** `ifconfig epair create` prints the A end, e.g. `epair12a`; the B end has the same number. */
export function parseEpairCreate(stdout: string): { a: string; b: string } {
  const m = /^(epair\d+)a$/.exec(stdout.trim());
  if (!m) throw new Error(`unexpected output from ifconfig epair create: ${JSON.stringify(stdout)}`);
  return { a: `${m[1]}a`, b: `${m[1]}b` };
}

/** `jail -i -c ...` prints the new jail's id alone on a line. */
export function parseJid(stdout: string): number {
  const line = stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .at(-1);
  if (line === undefined || !/^\d+$/.test(line) || Number(line) <= 0) {
    throw new Error(`unexpected output from jail -i -c: ${JSON.stringify(stdout)}`);
  }
  return Number(line);
}

export interface JlsEntry {
  name: string;
  jid: number;
}

/** `jls name jid`: one jail per line, the two values separated by a space. Malformed lines are skipped. */
export function parseJls(stdout: string): JlsEntry[] {
  const out: JlsEntry[] = [];
  for (const raw of stdout.split('\n')) {
    const f = raw.trim().split(/\s+/);
    if (f.length !== 2 || !/^\d+$/.test(f[1])) continue;
    out.push({ name: f[0], jid: Number(f[1]) });
  }
  return out;
}

/**
 * `ps -o stat= -J <jid>`: one state string per process (first letter: R, S, I, D, L, T, Z, W).
 * A process counts as frozen when it is stopped (T) or a zombie (Z, it will never run again).
 */
export function unstoppedStates(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '' && l[0] !== 'T' && l[0] !== 'Z');
}

/** `zfs list -H -o name ...`: one dataset name per line. */
export function parseNames(stdout: string): string[] {
  return stdout
    .split('\n')
    .map((l) => l.trim())
    .filter((l) => l !== '');
}
