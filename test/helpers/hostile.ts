// fast-check arbitraries for hostile input: strings, numbers and JSON-ish values that break
// parsers and validators (wrong types, huge and non-finite numbers, NUL, ../, unicode tricks,
// deep nesting, huge arrays, duplicate keys, tokens JSON.stringify would never write).
import fc from 'fast-check';

/** A token written into the JSON text as is (e.g. `1e999`, `-0`, a 40-digit integer). */
export class Raw {
  constructor(readonly text: string) {}
}

/** A JSON object as key/value pairs, so it can carry duplicate keys. */
export class Obj {
  constructor(readonly pairs: [string, J][]) {}
  get(key: string): J | undefined {
    for (let i = this.pairs.length - 1; i >= 0; i--) if (this.pairs[i]![0] === key) return this.pairs[i]![1];
    return undefined;
  }
  set(key: string, v: J): void {
    for (const p of this.pairs) if (p[0] === key) p[1] = v;
  }
}

export type J = null | boolean | number | string | Raw | Obj | J[];

/** JSON text of a J (NaN/Infinity numbers become null, as JSON.stringify does). */
export function ser(v: J): string {
  if (v instanceof Raw) return v.text;
  if (v instanceof Obj) return `{${v.pairs.map(([k, x]) => `${JSON.stringify(k)}:${ser(x)}`).join(',')}}`;
  if (Array.isArray(v)) return `[${v.map(ser).join(',')}]`;
  return JSON.stringify(v) ?? 'null';
}

/** Percent-encode the UTF-8 bytes of `s` (never throws, unlike encodeURIComponent on lone surrogates). */
export function pct(s: string): string {
  let out = '';
  for (const b of Buffer.from(s, 'utf8')) {
    const c = String.fromCharCode(b);
    out += /[A-Za-z0-9\-_.~]/.test(c) ? c : `%${b.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}

export const HOSTILE_STRINGS = [
  '', ' ', '\t', '\n', '\r\n', '.', '..', '../', '../../../../etc/passwd', '..\\..\\windows', '/etc/passwd', '/', '//', '-', '--', '-rf',
  '\u0000', 'a\u0000b', 'busybox\u0000', '%00', '%', '%%', '%zz', '%2F', '%2e%2e%2f', 'NaN', 'Infinity', '-Infinity', '1e309', '-0', '0x10',
  '1_000', '０', '١٢٣', 'null', 'undefined', 'true', 'false', '[]', '{}', '__proto__', 'constructor', 'prototype', 'toString',
  'hasOwnProperty', '\u202e', '\ufeff', '\u200b', '\ud800', '\udfff', '🐱', 'é', 'ユニコード', 'İ', 'ß', '$(id)', '`id`', '${HOME}', "'", '"', '\\',
  "' OR 1=1 --", '<script>alert(1)</script>', '{{7*7}}', '\u001b[31m', '\r\nX-Injected: 1', 'busybox', 'base', 'BUSYBOX', 'busybox/../base',
  'busybox-template', 'busybox ', ' busybox', 'snap-aaaaaaaaaa', 'snap-', 'snap-AAAAAAAAAA', 'SIGKILL', 'SIGFOO', 'root', 'nobody', 'user', '0',
  'a'.repeat(65), 'a'.repeat(129), 'x'.repeat(5000),
];

const SIZES = [1025, 4097, 65_537, 130_000, 1_100_000];

export const hostileString: fc.Arbitrary<string> = fc.oneof(
  { weight: 6, arbitrary: fc.constantFrom(...HOSTILE_STRINGS) },
  { weight: 2, arbitrary: fc.string({ maxLength: 40 }) },
  { weight: 2, arbitrary: fc.string({ unit: 'binary', maxLength: 20 }) },
  { weight: 1, arbitrary: fc.string({ unit: 'grapheme', maxLength: 10 }) },
  { weight: 1, arbitrary: fc.constantFrom(...SIZES).map((n) => 'A'.repeat(n)) },
);

export const hostileNumber: fc.Arbitrary<J> = fc.oneof(
  {
    weight: 4,
    arbitrary: fc.constantFrom<number>(0, -0, -1, 1, 7, 8, 15, 16, 0.05, 0.049, 0.5, 1.5, 255, 256, 257, 2 ** 31, 2 ** 32, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), 1e21, 1e308, -1e308, 5e-324),
  },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.double({ noNaN: true }) },
  { weight: 2, arbitrary: fc.constantFrom('1e999', '-1e999', '-0', '123456789012345678901234567890', '0.0000000000000000000001', '1E+2', '-0.0').map((t) => new Raw(t)) },
);

export const hostileKey: fc.Arbitrary<string> = fc.oneof(
  fc.constantFrom('__proto__', 'constructor', 'prototype', '', ' ', 'a b', 'A=B', '1ABC', 'PATH', 'LD_PRELOAD', 'x'.repeat(200), '\u0000', 'é'),
  fc.string({ maxLength: 12 }),
);

export const scalar: fc.Arbitrary<J> = fc.oneof(hostileString, hostileNumber, fc.boolean(), fc.constant(null));

/** Deep nesting and huge arrays, as raw text (building them as values would be slow). */
export const monster: fc.Arbitrary<J> = fc.oneof(
  fc.integer({ min: 50, max: 20_000 }).map((n) => new Raw('['.repeat(n) + ']'.repeat(n))),
  fc.integer({ min: 50, max: 5_000 }).map((n) => new Raw('{"a":'.repeat(n) + '1' + '}'.repeat(n))),
  fc.integer({ min: 1_000, max: 100_000 }).map((n) => new Raw(`[${new Array(n).fill('0').join(',')}]`)),
  fc.integer({ min: 300, max: 6_000 }).map((n) => new Raw(`[${new Array(n).fill('"x"').join(',')}]`)),
  fc.integer({ min: 100, max: 2_000 }).map((n) => new Raw(`{${Array.from({ length: n }, (_, i) => `"K${i}":"v"`).join(',')}}`)),
);

export const hostileValue: fc.Arbitrary<J> = fc.letrec<{ v: J }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', maxDepth: 4 },
    { weight: 6, arbitrary: scalar },
    { weight: 2, arbitrary: fc.array(tie('v'), { maxLength: 4 }) },
    { weight: 2, arbitrary: fc.array(fc.tuple(hostileKey, tie('v')), { maxLength: 4 }).map((p) => new Obj(p)) },
    { weight: 1, arbitrary: monster },
  ),
})).v;

/** A field: mostly a value the schema wants, often a hostile one. */
export const field = (valid: fc.Arbitrary<J>, validWeight = 5): fc.Arbitrary<J> =>
  fc.oneof({ weight: validWeight, arbitrary: valid }, { weight: 4, arbitrary: hostileValue });

/**
 * An object shape: each key absent, valid or hostile; sometimes unknown extra keys, sometimes a
 * key twice. `required` keys are present more often.
 */
export function shape(fields: Record<string, fc.Arbitrary<J>>, opts: { required?: string[] } = {}): fc.Arbitrary<Obj> {
  const entries = Object.entries(fields).map(([k, arb]) =>
    fc.option(arb.map((v) => [k, v] as [string, J]), { freq: opts.required?.includes(k) ? 12 : 2, nil: undefined }),
  );
  return fc
    .tuple(fc.tuple(...entries), fc.array(fc.tuple(hostileKey, hostileValue), { maxLength: 2 }), fc.nat({ max: 9 }))
    .map(([known, extra, dup]) => {
      const pairs = known.filter((p): p is [string, J] => p !== undefined);
      if (dup === 0 && pairs.length > 0) pairs.push([pairs[0]![0], null]);
      return new Obj(dup < 3 ? [...pairs, ...extra] : pairs);
    });
}

/** Bytes that are not JSON (or are JSON in an encoding nobody asked for). */
export const badJsonBytes: fc.Arbitrary<Buffer> = fc.oneof(
  fc.constantFrom(
    '{', '}', '{"a":}', '{"templateID":"busybox"', "{'templateID':'busybox'}", '[1,]', '{"a":1,}', 'NaN', 'Infinity', 'undefined',
    '\ufeff{}', '{"a":"\\x00"}', '{"a":"\\u12"}', '01', '.5', '+1', '--1', '"unterminated', '{"a" 1}', 'nul', 'tru', ' '.repeat(1000), '\u0000',
    '{"templateID":"busybox"}garbage', '{}{}', '<xml/>', 'templateID=busybox', '--boundary\r\nContent-Disposition: form-data\r\n\r\nx',
  ).map((s) => Buffer.from(s, 'utf8')),
  fc.uint8Array({ minLength: 1, maxLength: 300 }).map((a) => Buffer.from(a)),
  fc.constantFrom('{"templateID":"busybox"}', '{"cmd":"echo hi"}').map((s) => Buffer.from(s, 'utf16le')),
  fc.constant(Buffer.from([0xff, 0xfe, 0x7b, 0x00, 0x7d, 0x00])),
);
