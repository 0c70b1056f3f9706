/**
 * UTF-8 as Python decodes it with the two error handlers the file readers need, where the
 * reference readers differ from a strict decoder: "surrogatepass" (the strings of a pickle, as
 * CPython's unpickler and torch.load read them) and "surrogateescape" (ONNX names: onnx gives a
 * name that is not UTF-8 as bytes, and onnxruntime matches names byte for byte); and encodes it
 * "surrogatepass", as CPython's pickler writes a str.
 */
const strict = new TextDecoder('utf-8', { fatal: true });
const encoder = new TextEncoder();

/**
 * The length of the UTF-8 sequence at `bytes[i]`, or 0 where none starts there: RFC 3629's
 * table, which leaves out overlong forms, values past U+10FFFF and, unless `surrogates`,
 * surrogates (ED A0 80 to ED BF BF, which "surrogatepass" reads).
 */
function sequenceLength(bytes: Uint8Array, i: number, surrogates: boolean): number {
  const lead = bytes[i];
  if (lead < 0x80) return 1;
  // The sequence's length, and the range of its second byte (later ones are 0x80-0xbf).
  const [n, lo, hi] = lead >= 0xc2 && lead <= 0xdf ? [2, 0x80, 0xbf]
    : lead === 0xe0 ? [3, 0xa0, 0xbf] : lead === 0xed ? [3, 0x80, surrogates ? 0xbf : 0x9f] : lead >= 0xe1 && lead <= 0xef ? [3, 0x80, 0xbf]
      : lead === 0xf0 ? [4, 0x90, 0xbf] : lead >= 0xf1 && lead <= 0xf3 ? [4, 0x80, 0xbf] : lead === 0xf4 ? [4, 0x80, 0x8f] : [0, 0, 0];
  if (n === 0 || i + n > bytes.length || bytes[i + 1] < lo || bytes[i + 1] > hi) return 0;
  for (let k = 2; k < n; k++) if ((bytes[i + k] & 0xc0) !== 0x80) return 0;
  return n;
}

/**
 * `bytes` as Python's `bytes.decode('utf-8', 'surrogateescape')`: UTF-8, with each byte of a
 * sequence that is not UTF-8 as the lone surrogate U+DC80 to U+DCFF. Two byte strings never give
 * the same text, and a valid one never gives an escape.
 */
export function decodeSurrogateEscape(bytes: Uint8Array): string {
  try {
    return strict.decode(bytes);
  } catch {
    let text = '';
    for (let i = 0; i < bytes.length;) {
      const n = sequenceLength(bytes, i, false);
      text += n === 0 ? String.fromCharCode(0xdc00 + bytes[i]) : strict.decode(bytes.subarray(i, i + n));
      i += Math.max(n, 1);
    }
    return text;
  }
}

/** Whether `text`, from decodeSurrogateEscape, holds an escaped byte: whether its bytes were not UTF-8. */
export const hasEscapedBytes = (text: string): boolean => /[\udc80-\udcff]/u.test(text);

/**
 * `bytes` as Python's `bytes.decode('utf-8', 'surrogatepass')`, which reads a surrogate's three
 * bytes as that lone surrogate (CPython's pickler writes a string holding one so); or null where
 * they are not UTF-8 even so, or hold a leading surrogate's bytes then a trailing one's: Python
 * keeps those two apart from the character they pair to, which a JavaScript string cannot.
 */
export function decodeSurrogatePass(bytes: Uint8Array): string | null {
  try {
    return strict.decode(bytes);
  } catch {
    let text = '';
    let leading = false; // whether the last sequence was a leading surrogate's
    for (let i = 0; i < bytes.length;) {
      const n = sequenceLength(bytes, i, true);
      if (n === 0) return null;
      const surrogate = n === 3 && bytes[i] === 0xed && bytes[i + 1] >= 0xa0;
      if (surrogate) {
        const unit = 0xd000 | ((bytes[i + 1] & 0x3f) << 6) | (bytes[i + 2] & 0x3f);
        if (leading && unit >= 0xdc00) return null;
        leading = unit < 0xdc00;
        text += String.fromCharCode(unit);
      } else {
        leading = false;
        text += strict.decode(bytes.subarray(i, i + n));
      }
      i += n;
    }
    return text;
  }
}

/** Whether `text` holds a lone surrogate, which UTF-8 has no form for ("surrogatepass" writes it anyway). */
export const holdsLoneSurrogate = (text: string): boolean => /\p{Cs}/u.test(text);

/**
 * `text` as Python's `str.encode('utf-8', 'surrogatepass')`, as CPython's pickler writes a str:
 * UTF-8, with a lone surrogate as its three bytes (ED A0 80 for U+D800), which
 * decodeSurrogatePass reads back. TextEncoder alone would write U+FFFD in its place.
 */
export function encodeSurrogatePass(text: string): Uint8Array {
  if (!holdsLoneSurrogate(text)) return encoder.encode(text);
  const parts: number[] = [];
  for (const c of text) {
    const unit = c.charCodeAt(0);
    if (c.length === 1 && unit >= 0xd800 && unit <= 0xdfff) parts.push(0xed, 0x80 | ((unit >> 6) & 0x3f), 0x80 | (unit & 0x3f));
    else parts.push(...encoder.encode(c));
  }
  return Uint8Array.from(parts);
}

/** Whether the code unit at `text[i]` is a leading surrogate (U+D800 to U+DBFF). */
const leadingAt = (text: string, i: number): boolean => (text.charCodeAt(i) & 0xfc00) === 0xd800;

/**
 * `a` against `b` by code point, the order of Python's `sorted()` and of their UTF-8 bytes (where
 * `a`, `b` are well-formed), with a lone surrogate as its own code point: negative, 0 or positive.
 * JavaScript's `<` compares UTF-16 code units, which put U+10000 and past before U+E000-U+FFFF.
 */
export function compareCodePoints(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  let i = 0;
  while (i < n && a.charCodeAt(i) === b.charCodeAt(i)) i++;
  if (i === n) return a.length - b.length;
  // Where the units before the first that differ end in a leading surrogate, the code points that
  // differ may begin there: a pair in one string, that surrogate alone in the other.
  if (i > 0 && leadingAt(a, i - 1)) {
    const before = (a.codePointAt(i - 1) as number) - (b.codePointAt(i - 1) as number);
    if (before !== 0) return before;
  }
  return (a.codePointAt(i) as number) - (b.codePointAt(i) as number);
}
