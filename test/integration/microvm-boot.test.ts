// A fact check, not a timing: the Debian cloud kernel plus our initramfs boots under QEMU's
// microvm machine (TCG, as on this host kind) and reaches our init, which prints a marker line with
// the guest's own kernel release and memory on the serial console. Runs as root (apt-get download).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { release as hostRelease } from 'node:os';
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { guestKernel, tscKhz } from '../helpers/microvm-env.ts';

const MEM_MIB = 256;

test('a microvm guest boots the cloud kernel to our init and prints the marker', async (t) => {
  const k = await guestKernel();
  const marker = randomBytes(6).toString('hex');
  const khz = await tscKhz();
  const tsc = khz ? `tsc_early_khz=${khz}` : '';
  const args = [
    '-M', 'microvm,accel=tcg,isa-serial=on,pit=on,pic=on,rtc=on', '-cpu', 'max', '-m', String(MEM_MIB), '-smp', '1',
    '-nodefaults', '-no-user-config', '-display', 'none', '-serial', 'stdio', '-no-reboot',
    '-kernel', k.vmlinuz, '-initrd', k.initrd,
    '-append', `console=ttyS0 panic=-1 reboot=t quiet ${tsc} coppice.mode=marker coppice.marker=${marker}`,
  ];
  const t0 = performance.now();
  const qemu = spawn('qemu-system-x86_64', args, { stdio: ['ignore', 'pipe', 'pipe'] });
  let console = '';
  const line = await new Promise<string>((resolve, reject) => {
    const deadline = setTimeout(() => reject(new Error(`no marker within 120 s; console:\n${console.slice(-2000)}`)), 120_000);
    const onData = (b: Buffer) => {
      console += b.toString();
      const m = console.match(new RegExp(`coppice-init: marker ${marker} [^\\r\\n]*`));
      if (m) { clearTimeout(deadline); resolve(m[0]); }
    };
    qemu.stdout.on('data', onData);
    qemu.stderr.on('data', onData);
    qemu.on('exit', (code) => { clearTimeout(deadline); reject(new Error(`qemu exited (${code}) before the marker:\n${console.slice(-2000)}`)); });
  });
  t.diagnostic(`marker after ${(performance.now() - t0).toFixed(0)} ms wall: ${line}`);
  // The guest powers itself off after the marker; if it does not, end our own qemu by its handle.
  if (qemu.exitCode === null) {
    const exited = new Promise((res) => qemu.once('exit', res));
    const kill = setTimeout(() => qemu.kill('SIGKILL'), 30_000);
    await exited;
    clearTimeout(kill);
  }

  const fields = Object.fromEntries(line.split(' ').slice(3).map((kv) => kv.split('=')));
  assert.equal(fields.release, k.release);
  assert.notEqual(fields.release, hostRelease(), 'the guest runs its own kernel, not the host\'s');
  const memKb = Number(fields.memtotal_kb);
  assert.ok(memKb > MEM_MIB * 1024 * 0.7 && memKb <= MEM_MIB * 1024, `MemTotal ${memKb} kB is not ~${MEM_MIB} MiB`);
});
