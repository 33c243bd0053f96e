// The error hierarchy (src/errors.ts) and the edge's input schemas (src/protocol/requests.ts):
// stable codes, HTTP statuses, and 400s that name the bad field.
import assert from 'node:assert/strict';
import { describe, test } from 'node:test';
import { coppiceConnectBody, coppiceCreateBody, coppiceTimeoutBody, createSandboxBody, execBody, parse, timeoutBody } from '../../src/protocol/requests.ts';
import { errorBody, httpStatusOf } from '../../src/http/errors.ts';
import {
  backendFailed,
  badRequest,
  conflict,
  CoppiceError,
  fromErrorInfo,
  notFound,
  timeout,
  toErrorInfo,
  unsupported,
  type ErrorCode,
} from '../../src/errors.ts';

describe('CoppiceError', () => {
  test('every code maps to its HTTP status', () => {
    const expected: Record<ErrorCode, number> = {
      bad_request: 400,
      unauthorized: 401,
      not_found: 404,
      method_not_allowed: 405,
      conflict: 409,
      payload_too_large: 413,
      too_many_requests: 429,
      internal: 500,
      unsupported: 501,
      backend_failed: 502,
      draining: 503,
      not_ready: 503,
      timeout: 504,
      insufficient_storage: 507,
    };
    for (const [code, status] of Object.entries(expected) as [ErrorCode, number][]) {
      const e = new CoppiceError(code, 'x');
      assert.equal(httpStatusOf(e.code), status, code);
      assert.equal(e.code, code);
      assert.ok(e instanceof Error);
      assert.equal(e.name, 'CoppiceError');
    }
  });

  test('unsupported says "<op> not supported on <backend> backend v1" and is a 501', () => {
    const e = unsupported('snapshot', 'bhyve');
    assert.equal(httpStatusOf(e.code), 501);
    assert.equal(e.code, 'unsupported');
    assert.equal(e.message, 'snapshot not supported on bhyve backend v1');
    assert.ok(unsupported('fork', 'bhyve').message.endsWith('not supported on bhyve backend v1'));
  });

  test('the helpers build the right codes and messages', () => {
    assert.deepEqual([httpStatusOf(notFound('sandbox "abc"').code), notFound('sandbox "abc"').message], [404, 'sandbox "abc" not found']);
    assert.equal(httpStatusOf(conflict('busy').code), 409);
    assert.equal(httpStatusOf(timeout('slow').code), 504);
    const cause = new Error('EIO');
    const bf = backendFailed('runc failed', cause);
    assert.equal(httpStatusOf(bf.code), 502);
    assert.equal(bf.cause, cause);
    const br = badRequest('templateID', 'is required');
    assert.equal(httpStatusOf(br.code), 400);
    assert.equal(br.field, 'templateID');
    assert.equal(br.message, 'templateID: is required');
  });

  test('errorBody is the wire shape { code: <status>, error, message, field? }', () => {
    assert.deepEqual(errorBody(badRequest('timeout', 'too big')), { code: 400, error: 'bad_request', message: 'timeout: too big', field: 'timeout' });
    assert.deepEqual(errorBody(notFound('x')), { code: 404, error: 'not_found', message: 'x not found' });
    assert.deepEqual(JSON.parse(JSON.stringify(errorBody(conflict('c')))), { code: 409, error: 'conflict', message: 'c' });
  });

  test('errors survive the trip through machine events (toErrorInfo / fromErrorInfo)', () => {
    const info = toErrorInfo(badRequest('cwd', 'must be an absolute path'));
    assert.deepEqual(info, { code: 'bad_request', message: 'cwd: must be an absolute path', field: 'cwd' });
    const back = fromErrorInfo(info);
    assert.ok(back instanceof CoppiceError);
    assert.equal(httpStatusOf(back.code), 400);
    assert.equal(back.field, 'cwd');
    assert.deepEqual(toErrorInfo(new Error('boom')), { code: 'backend_failed', message: 'boom' });
    assert.deepEqual(toErrorInfo('weird'), { code: 'backend_failed', message: 'weird' });
  });
});

/** Parse and expect a 400 CoppiceError naming `field`. */
function badField(run: () => unknown, field: string, message?: RegExp): CoppiceError {
  let caught: unknown;
  try {
    run();
  } catch (e) {
    caught = e;
  }
  assert.ok(caught instanceof CoppiceError, `expected a CoppiceError, got ${String(caught)}`);
  assert.equal(httpStatusOf(caught.code), 400);
  assert.equal(caught.code, 'bad_request');
  assert.equal(caught.field, field);
  assert.ok(caught.message.startsWith(`${field}: `), caught.message);
  if (message) assert.match(caught.message, message);
  return caught;
}

describe('createSandboxBody', () => {
  test('a good body parses, unknown keys are let through (E2B sends extras)', () => {
    const body = parse(createSandboxBody, {
      templateID: 'base',
      timeout: 300,
      metadata: { owner: 'ci' },
      envVars: { FOO: 'bar', _X1: '' },
      limits: { memoryMiB: 1024, cpus: 2 },
      secure: true,
    });
    assert.equal(body.templateID, 'base');
    assert.equal(body.timeout, 300);
    assert.deepEqual(body.envVars, { FOO: 'bar', _X1: '' });
    assert.deepEqual(body.limits, { memoryMiB: 1024, cpus: 2 });
  });

  test('templateID missing (also from an empty or null body) is "templateID: is required"', () => {
    badField(() => parse(createSandboxBody, {}), 'templateID', /is required/);
    badField(() => parse(createSandboxBody, null), 'templateID', /is required/);
    badField(() => parse(createSandboxBody, undefined), 'templateID', /is required/);
  });

  test('templateID with a path in it is refused', () => {
    badField(() => parse(createSandboxBody, { templateID: '../etc' }), 'templateID', /template name/);
    badField(() => parse(createSandboxBody, { templateID: 'a/../b' }), 'templateID');
    badField(() => parse(createSandboxBody, { templateID: 'a/b' }), 'templateID');
    badField(() => parse(createSandboxBody, { templateID: '..' }), 'templateID');
    badField(() => parse(createSandboxBody, { templateID: '' }), 'templateID');
    badField(() => parse(createSandboxBody, { templateID: 42 }), 'templateID');
  });

  test('timeout negative, zero, fractional or beyond 30 days is refused', () => {
    badField(() => parse(createSandboxBody, { templateID: 'base', timeout: -1 }), 'timeout');
    badField(() => parse(createSandboxBody, { templateID: 'base', timeout: 0 }), 'timeout');
    badField(() => parse(createSandboxBody, { templateID: 'base', timeout: 1.5 }), 'timeout');
    badField(() => parse(createSandboxBody, { templateID: 'base', timeout: 30 * 24 * 3600 + 1 }), 'timeout');
    assert.equal(parse(createSandboxBody, { templateID: 'base', timeout: 30 * 24 * 3600 }).timeout, 30 * 24 * 3600);
  });

  test('envVars with a bad key names the key under envVars', () => {
    badField(() => parse(createSandboxBody, { templateID: 'base', envVars: { '1BAD': 'x' } }), 'envVars.1BAD', /environment variable name/);
    badField(() => parse(createSandboxBody, { templateID: 'base', envVars: { 'A-B': 'x' } }), 'envVars.A-B');
    badField(() => parse(createSandboxBody, { templateID: 'base', envVars: { 'A=B': 'x' } }), 'envVars.A=B');
    badField(() => parse(createSandboxBody, { templateID: 'base', envVars: { OK: 1 } }), 'envVars.OK');
  });

  test('limits out of range or unknown name the limit', () => {
    badField(() => parse(createSandboxBody, { templateID: 'base', limits: { memoryMiB: 1 } }), 'limits.memoryMiB');
    badField(() => parse(createSandboxBody, { templateID: 'base', limits: { pids: 1 } }), 'limits.pids');
    badField(() => parse(createSandboxBody, { templateID: 'base', limits: { disk: 1 } }), 'limits.disk');
  });

  test('coppice\'s own create refuses an unknown field by its name; the E2B form lets it pass', () => {
    const e = badField(() => parse(coppiceCreateBody, { templateID: 'base', timout: 30 }), 'timout');
    assert.match(e.message, /not a known field/);
    assert.equal(parse(createSandboxBody, { templateID: 'base', secure: true }).templateID, 'base');
    badField(() => parse(coppiceConnectBody, { timeout: 5, extra: 1 }), 'extra');
    badField(() => parse(coppiceTimeoutBody, { timeout: 5, extra: 1 }), 'extra');
  });

  test('a prefix is put in front of the field', () => {
    badField(() => parse(createSandboxBody, {}, 'body'), 'body.templateID');
  });
});

describe('execBody', () => {
  test('cmd or argv, with the optional fields, parses', () => {
    assert.deepEqual(parse(execBody, { cmd: 'echo hi', cwd: '/work', user: 'user', timeoutMs: 0, env: { A: '1' } }), {
      cmd: 'echo hi',
      cwd: '/work',
      user: 'user',
      timeoutMs: 0,
      env: { A: '1' },
    });
    assert.deepEqual(parse(execBody, { argv: ['ls', '-l'] }), { argv: ['ls', '-l'] });
  });

  test('both cmd and argv, or neither, is refused on cmd', () => {
    badField(() => parse(execBody, { cmd: 'ls', argv: ['ls'] }), 'cmd', /exactly one/);
    badField(() => parse(execBody, {}), 'cmd', /exactly one/);
  });

  test('a relative cwd is refused', () => {
    badField(() => parse(execBody, { cmd: 'ls', cwd: 'tmp' }), 'cwd', /absolute/);
    badField(() => parse(execBody, { cmd: 'ls', cwd: '' }), 'cwd');
  });

  test('bad argv, env, user, timeoutMs name their field', () => {
    badField(() => parse(execBody, { argv: [] }), 'argv');
    badField(() => parse(execBody, { argv: [1] }), 'argv.0');
    badField(() => parse(execBody, { cmd: 'ls', env: { 'bad key': 'x' } }), 'env.bad key');
    badField(() => parse(execBody, { cmd: 'ls', user: 'Root;rm' }), 'user');
    badField(() => parse(execBody, { cmd: 'ls', timeoutMs: -5 }), 'timeoutMs');
  });

  test('unknown keys are refused (the body is strict)', () => {
    badField(() => parse(execBody, { cmd: 'ls', shell: '/bin/zsh' }), 'shell');
  });
});

describe('timeoutBody', () => {
  test('timeout is required and must be a non-negative whole number of seconds', () => {
    badField(() => parse(timeoutBody, {}), 'timeout', /is required/);
    badField(() => parse(timeoutBody, { timeout: -1 }), 'timeout');
    assert.equal(parse(timeoutBody, { timeout: 0 }).timeout, 0);
  });
});
