// The jail driver's agent pieces that need no sandbox: the init config with the agent, the exec
// environment (the same as runc exec's process.json), and the exit mapping.
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AGENT_INIT_ARGS, AGENT_PATH, BUSYBOX_PATH, INIT_PATH, buildConfig, buildExecProcess } from '../../src/backends/jail/linux/oci-config.ts';
import { execEnv, mapAgentExit } from '../../src/backends/jail/linux/agent/exec.ts';

const base = { id: 'abcde12345', cgroupsPath: '/coppice/abcde12345', limits: { memoryMiB: 64, cpus: 1, pids: 64 } };

describe('config with the agent as init', () => {
  const c = buildConfig({ ...base, hostAgent: '/usr/local/lib/coppice/coppice-agent' });

  it('runs the agent on the preserved fd 3, bind-mounted read-only, with no tini or busybox', () => {
    assert.deepEqual(c.process.args, AGENT_INIT_ARGS);
    assert.deepEqual(c.process.args, [AGENT_PATH, '--listen-fd', '3']);
    const m = c.mounts.find((x) => x.destination === AGENT_PATH);
    assert.equal(m?.source, '/usr/local/lib/coppice/coppice-agent');
    assert.equal(m?.type, 'bind');
    assert.ok(m?.options?.includes('ro'));
    assert.ok(!c.mounts.some((x) => x.destination === INIT_PATH || x.destination === BUSYBOX_PATH));
  });

  it('still needs tini and busybox without the agent', () => {
    assert.throws(() => buildConfig(base), /hostInit/);
  });
});

describe('agent exec environment and exits', () => {
  const user = { name: 'user', uid: 1000, gid: 1000, additionalGids: [27], home: '/home/user' };

  it('gives the command exactly the env runc exec would', () => {
    for (const env of [undefined, { FOO: 'x y' }, { PATH: '/opt/bin', HOME: '/x' }] as (Record<string, string> | undefined)[]) {
      assert.deepEqual(execEnv(user, env), buildExecProcess({ argv: ['true'], user, env }).env);
    }
  });

  it('reports a signal only when we delivered it, as the runc path did', () => {
    assert.deepEqual(mapAgentExit({ exitCode: null, signal: 'SIGINT' }, new Set([2])), { exitCode: null, signal: 'SIGINT' });
    assert.deepEqual(mapAgentExit({ exitCode: null, signal: 'SIGKILL' }, new Set([2])), { exitCode: 137, signal: null });
    assert.deepEqual(mapAgentExit({ exitCode: 3, signal: null }, new Set([2])), { exitCode: 3, signal: null });
  });
});
