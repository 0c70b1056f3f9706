/**
 * The UTF-8 decoders of the file readers (src/utf8.ts) against Python's bytes.decode('utf-8', ...)
 * with "surrogateescape" (ONNX names) and "surrogatepass" (a pickle's strings): its output on edge
 * cases, and on any bytes a reading that knows nothing of UTF-8's table, only a strict decoder's
 * verdict on each run of one to four bytes; "surrogatepass" the other way, as CPython's pickler
 * writes a str; and the order of names by code point, as Python's sorted() orders them.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { compareCodePoints, decodeSurrogateEscape, decodeSurrogatePass, encodeSurrogatePass } from '../dist/src/utf8.js';

const strict = new TextDecoder('utf-8', { fatal: true });

/** The character `bytes` decode to strictly, where they are one character's, else null. */
function one(bytes: Uint8Array): string | null {
  try {
    const text = strict.decode(bytes);
    return [...text].length === 1 ? text : null;
  } catch {
    return null;
  }
}

/** A lone surrogate's three bytes (ED A0 80 to ED BF BF), as "surrogatepass" writes and reads them: the surrogate, else null. */
function surrogate(bytes: Uint8Array): string | null {
  if (bytes.length !== 3 || bytes[0] !== 0xed || bytes[1] < 0xa0 || bytes[1] > 0xbf || (bytes[2] & 0xc0) !== 0x80) return null;
  return String.fromCharCode(0xd000 | ((bytes[1] & 0x3f) << 6) | (bytes[2] & 0x3f));
}

/** The sequence at `i`: its length and text (a character's, or with `pass` a lone surrogate's), or null. */
function sequenceAt(bytes: Uint8Array, i: number, pass: boolean): [number, string] | null {
  for (const n of [1, 2, 3, 4]) {
    if (i + n > bytes.length) break;
    const text = one(bytes.subarray(i, i + n)) ?? (pass ? surrogate(bytes.subarray(i, i + n)) : null);
    if (text !== null) return [n, text];
  }
  return null;
}

/** Byte strings, most bytes from those that begin, continue or break UTF-8's sequences. */
const byteStrings = fc.array(fc.oneof(
  fc.constantFrom(0x41, 0x7f, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc1, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf3, 0xf4, 0xf5, 0xff),
  fc.integer({ min: 0, max: 255 }),
), { maxLength: 12 }).map((list) => Uint8Array.from(list));

describe('decodeSurrogateEscape', () => {
  it('gives what Python\'s bytes.decode(\'utf-8\', \'surrogateescape\') gives', () => {
    const python: [string, string][] = [
      ['e28241', '\udce2\udc82A'], ['eda080', '\udced\udca0\udc80'], ['f4908080', '\udcf4\udc90\udc80\udc80'], ['c0af', '\udcc0\udcaf'],
      ['f09f9880', '😀'], ['e0a0', '\udce0\udca0'], ['f0908080ff', '𐀀\udcff'], ['', ''], ['41c3a9', 'Aé'],
    ];
    for (const [hex, text] of python) expect(decodeSurrogateEscape(Buffer.from(hex, 'hex')), hex).toBe(text);
  });

  it('reads any bytes as UTF-8 where a character starts, each other byte as U+DC80 + it', () => {
    fc.assert(fc.property(byteStrings, (bytes) => {
      let want = '';
      for (let i = 0; i < bytes.length;) {
        const found = sequenceAt(bytes, i, false);
        want += found === null ? String.fromCharCode(0xdc00 + bytes[i]) : found[1];
        i += found === null ? 1 : found[0];
      }
      expect(decodeSurrogateEscape(bytes)).toBe(want);
    }), { numRuns: 2000, seed: 1 });
  });
});

describe('decodeSurrogatePass', () => {
  it('gives what Python\'s bytes.decode(\'utf-8\', \'surrogatepass\') gives, or null where it raises', () => {
    const python: [string, string | null][] = [
      ['eda080', '\ud800'], ['edb080', '\udc00'], ['edbfbf', '\udfff'], ['626eeda0802e', 'bn\ud800.'], ['edb080eda080', '\udc00\ud800'],
      ['f09f9880', '😀'], ['41c3a9', 'Aé'], ['', ''], ['ff', null], ['c0af', null], ['eda0', null], ['e28241', null], ['f4908080', null],
    ];
    for (const [hex, text] of python) expect(decodeSurrogatePass(Buffer.from(hex, 'hex')), hex).toBe(text);
    // Python gives '\ud800\udc00', two characters; a JavaScript string of those two code units is U+10000.
    expect(decodeSurrogatePass(Buffer.from('eda080edb080', 'hex'))).toBeNull();
    expect(decodeSurrogatePass(Buffer.from('eda08041edb080', 'hex'))).toBe('\ud800A\udc00');
  });

  it('reads any bytes as UTF-8 and lone surrogates\' bytes, or gives null where neither starts, or a pair is written apart', () => {
    fc.assert(fc.property(byteStrings, (bytes) => {
      let want: string | null = '';
      for (let i = 0; i < bytes.length && want !== null;) {
        const found = sequenceAt(bytes, i, true);
        if (found === null) want = null;
        else {
          const [n, text] = found;
          const prior: string = want;
          const joined = prior.length > 0 && /[\ud800-\udbff]$/.test(prior) && /^[\udc00-\udfff]$/.test(text);
          want = joined ? null : prior + text;
          i += n;
        }
      }
      expect(decodeSurrogatePass(bytes)).toBe(want);
    }), { numRuns: 2000, seed: 1 });
  });
});

/** Strings of code units that make lone surrogates, pairs, and BMP characters on either side of the surrogates. */
const units = fc.array(fc.constantFrom(0x61, 0x62, 0xd7ff, 0xd800, 0xd83d, 0xdbff, 0xdc00, 0xde00, 0xdfff, 0xe000, 0xfffd, 0xffff), { maxLength: 6 })
  .map((list) => String.fromCharCode(...list));

describe('encodeSurrogatePass', () => {
  it('gives what Python\'s str.encode(\'utf-8\', \'surrogatepass\') gives', () => {
    const python: [string, string][] = [
      ['bn\ud800.', '626eeda0802e'], ['\udfff', 'edbfbf'], ['\udc80\u{1f600}', 'edb280f09f9880'], ['\udbff\ue000', 'edafbfee8080'],
      ['é✓', 'c3a9e29c93'], ['', ''], ['\0\n', '000a'],
    ];
    for (const [text, hex] of python) expect(Buffer.from(encodeSurrogatePass(text)).toString('hex'), hex).toBe(hex);
  });

  it('is read back by decodeSurrogatePass, and writes a well-formed string as TextEncoder does', () => {
    fc.assert(fc.property(units, (text) => {
      const bytes = encodeSurrogatePass(text);
      expect(decodeSurrogatePass(bytes)).toBe(text);
      if (text.isWellFormed()) expect(Buffer.from(bytes).equals(Buffer.from(text))).toBe(true);
    }), { numRuns: 2000, seed: 1 });
  });
});

describe('compareCodePoints', () => {
  it('orders strings as Python\'s sorted() does, a lone surrogate as its own code point', () => {
    const names = ['b', 'a\ue000', 'a😀', 'a\ufffd', 'a', 'a\ud800', 'a\udc80', 'a\ud83d', 'a\ud83dx', 'a\uffff', 'ab', 'a\u{10000}', 'a\ud7ff', ''];
    // sorted() of the same str values in Python 3 (a pair there is one character).
    const python = ['', 'a', 'ab', 'a\ud7ff', 'a\ud800', 'a\ud83d', 'a\ud83dx', 'a\udc80', 'a\ue000', 'a\ufffd', 'a\uffff', 'a\u{10000}', 'a😀', 'b'];
    expect([...names].sort(compareCodePoints)).toEqual(python);
    // JavaScript's own order puts the astral characters before U+E000.
    expect([...names].sort()).not.toEqual(python);
  });

  /** The reference: the strings' code points (Array.from splits a string so), compared one by one. */
  const byCodePoints = (a: string, b: string): number => {
    const x = Array.from(a, (c) => c.codePointAt(0) as number);
    const y = Array.from(b, (c) => c.codePointAt(0) as number);
    for (let i = 0; i < Math.min(x.length, y.length); i++) if (x[i] !== y[i]) return x[i] - y[i];
    return x.length - y.length;
  };

  it('gives the sign of a comparison of the code points, which for well-formed strings is their UTF-8 bytes\' order', () => {
    fc.assert(fc.property(units, units, (a, b) => {
      const sign = Math.sign(compareCodePoints(a, b));
      expect(sign).toBe(Math.sign(byCodePoints(a, b)));
      expect(Math.sign(compareCodePoints(b, a)) + sign).toBe(0);
      if (a.isWellFormed() && b.isWellFormed()) expect(sign).toBe(Buffer.compare(Buffer.from(a), Buffer.from(b)));
    }), { numRuns: 5000, seed: 1 });
  });
});
