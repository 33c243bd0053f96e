// E2B's GET /sandboxes/:id/metrics (`sandbox.getMetrics()`): one sample, taken now from inside the
// sandbox (its cgroup, v2 or v1, when it has one; else the guest kernel's /proc, a bhyve guest's
// own), so it works on both isolation classes. CPU use is measured over 200 ms; memory and disk are the sandbox's own.
import type { Gateway } from '../actors/gateway.ts';
import { CoppiceError } from '../errors.ts';

/** Prints: cpu-usec-before cpu-usec-after mem-used mem-total cpus disk-used disk-total (bytes). */
const SAMPLE = String.raw`
C=/sys/fs/cgroup
cpu() {
  if [ -r $C/cpu.stat ]; then awk '/^usage_usec/ {printf "%.0f\n", $2}' $C/cpu.stat
  elif [ -r $C/cpuacct/cpuacct.usage ]; then awk '{printf "%.0f\n", $1 / 1000}' $C/cpuacct/cpuacct.usage
  else awk '/^cpu / {printf "%.0f\n", ($2+$3+$4+$7+$8)*10000}' /proc/stat; fi
}
a=$(cpu); sleep 0.2; b=$(cpu)
mt=$(awk '/^MemTotal:/ {printf "%.0f\n", $2*1024}' /proc/meminfo); ma=$(awk '/^MemAvailable:/ {printf "%.0f\n", $2*1024}' /proc/meminfo)
if [ -r $C/memory.current ]; then mu=$(cat $C/memory.current); mx=$(cat $C/memory.max)
elif [ -r $C/memory/memory.usage_in_bytes ]; then mu=$(cat $C/memory/memory.usage_in_bytes); mx=$(cat $C/memory/memory.limit_in_bytes)
else mu=$((mt - ma)); mx=max; fi
# No limit (v2 "max", v1 a huge number): the machine's memory.
mt=$(awk -v x="$mx" -v t="$mt" 'BEGIN { if (x == "max" || x + 0 > t + 0) printf "%.0f\n", t; else printf "%.0f\n", x }')
d=$(df -P -B1 / 2>/dev/null | awk 'NR==2 {printf "%.0f %.0f\n", $3, $2}'); [ -n "$d" ] || d='0 0'
echo "$a $b $mu $mt $(nproc) $d"
`;

export interface E2bMetric {
  timestamp: string;
  cpuUsedPct: number;
  cpuCount: number;
  memUsed: number;
  memTotal: number;
  diskUsed: number;
  diskTotal: number;
}

export async function sampleMetrics(gw: Gateway, id: string): Promise<E2bMetric[]> {
  const view = gw.view(id); // 404 first
  const r = await gw.exec(id, { argv: ['/bin/sh', '-c', SAMPLE], user: 'root', timeoutMs: 10_000 });
  const f = r.stdout.trim().split(/\s+/).map(Number);
  if (r.exitCode !== 0 || f.length !== 7 || f.some((n) => !Number.isFinite(n))) {
    throw new CoppiceError('backend_failed', `metrics of sandbox ${id}: could not sample (${r.stderr.trim().slice(0, 200) || r.stdout.trim().slice(0, 200)})`);
  }
  const [before, after, memUsed, memTotal, seen, diskUsed, diskTotal] = f as [number, number, number, number, number, number, number];
  // The CPUs it may use are its limit (a jail sees every host CPU; its quota is the limit).
  const cpus = Math.min(view.cpuCount, seen);
  const cpuCount = Math.max(1, Math.ceil(cpus));
  // usec of CPU over 200 ms of wall time, as a share of those CPUs (E2B: percent of its vCPUs).
  const cpuUsedPct = Math.max(0, Math.min(100, ((after - before) / 200_000 / Math.max(0.01, cpus)) * 100));
  return [{ timestamp: new Date().toISOString(), cpuUsedPct: Math.round(cpuUsedPct * 100) / 100, cpuCount, memUsed, memTotal, diskUsed, diskTotal }];
}
