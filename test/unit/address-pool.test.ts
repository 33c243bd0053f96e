import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CoppiceError } from '../../src/errors.ts';
import { AddressPool, intToIp, ipToInt, parseCidr } from '../../src/backends/jail/address-pool.ts';

describe('AddressPool', () => {
  it('parses CIDRs and normalizes the network address', () => {
    assert.deepEqual(parseCidr('10.78.0.0/24'), { network: ipToInt('10.78.0.0'), prefix: 24 });
    assert.deepEqual(parseCidr('10.78.0.77/24'), { network: ipToInt('10.78.0.0'), prefix: 24 });
    assert.equal(intToIp(ipToInt('192.168.255.1')), '192.168.255.1');
    assert.throws(() => parseCidr('10.78.0.0'), /CIDR/);
    assert.throws(() => parseCidr('10.78.0.0/31'), /prefix/);
    assert.throws(() => parseCidr('10.78.0.256/24'), /IPv4/);
  });

  it('reserves network, gateway and broadcast; hands out .2 .. .254 of a /24', () => {
    const pool = new AddressPool('10.78.0.0/24');
    assert.equal(pool.gateway, '10.78.0.1');
    assert.equal(pool.prefix, 24);
    assert.equal(pool.capacity, 253);
    const all = new Set<string>();
    for (let i = 0; i < pool.capacity; i++) all.add(pool.allocate());
    assert.equal(all.size, 253);
    assert.ok(all.has('10.78.0.2'));
    assert.ok(all.has('10.78.0.254'));
    for (const reserved of ['10.78.0.0', '10.78.0.1', '10.78.0.255']) assert.ok(!all.has(reserved));
  });

  it('throws too_many_requests when exhausted, and recovers after a release', () => {
    const pool = new AddressPool('10.9.9.0/29'); // .2 .. .6
    const got = [1, 2, 3, 4, 5].map(() => pool.allocate());
    assert.deepEqual(got, ['10.9.9.2', '10.9.9.3', '10.9.9.4', '10.9.9.5', '10.9.9.6']);
    assert.throws(
      () => pool.allocate(),
      (e: unknown) => e instanceof CoppiceError && e.code === 'too_many_requests' && /10\.9\.9\.0\/29/.test(e.message),
    );
    pool.release('10.9.9.4');
    assert.equal(pool.allocate(), '10.9.9.4');
  });

  it('never hands out a live address twice, even across many alloc/release cycles', () => {
    const pool = new AddressPool('10.9.0.0/28');
    const live = new Set<string>();
    let seed = 7;
    const rnd = () => (seed = (seed * 1103515245 + 12345) % 2 ** 31) / 2 ** 31;
    for (let i = 0; i < 5000; i++) {
      if (live.size > 0 && (rnd() < 0.45 || live.size === pool.capacity)) {
        const victim = [...live][Math.floor(rnd() * live.size)];
        pool.release(victim);
        live.delete(victim);
      } else {
        const ip = pool.allocate();
        assert.ok(!live.has(ip), `${ip} handed out twice`);
        live.add(ip);
      }
      assert.equal(pool.inUse, live.size);
    }
  });

  it('claims specific addresses for re-adoption and refuses double claims', () => {
    const pool = new AddressPool('10.78.0.0/24');
    pool.claim('10.78.0.2');
    assert.ok(pool.isLive('10.78.0.2'));
    assert.notEqual(pool.allocate(), '10.78.0.2');
    assert.throws(() => pool.claim('10.78.0.2'), (e: unknown) => e instanceof CoppiceError && e.code === 'conflict');
    assert.throws(() => pool.claim('10.78.0.1'), /not a sandbox address/); // the gateway
    assert.throws(() => pool.claim('10.79.0.5'), /not a sandbox address/);
  });

  it('release is idempotent and ignores foreign addresses', () => {
    const pool = new AddressPool();
    const ip = pool.allocate();
    pool.release(ip);
    pool.release(ip);
    pool.release('1.2.3.4');
    pool.release('garbage');
    assert.equal(pool.inUse, 0);
  });

  it('reuses released addresses last (round robin)', () => {
    const pool = new AddressPool('10.78.0.0/24');
    const a = pool.allocate();
    pool.release(a);
    assert.notEqual(pool.allocate(), a);
  });
});
