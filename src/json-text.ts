/**
 * JSON as serde_json reads it (RFC 8259, strictly), keeping what `JSON.parse` drops: each object's
 * keys in order, a key named twice included, and each number's text. The safetensors reader needs
 * both to refuse what the reference reader (serde_json in Rust) refuses: a field named twice, a
 * dimension written `2.0`. It also refuses, as serde_json does and `JSON.parse` does not, a lone
 * surrogate escape (`"\ud800"`), a number past float64's range (`1e400`) and nesting past 127
 * levels.
 */

/**
 * A number written otherwise than `String()` writes its value (`2.0`, `-0`, `1e3`, `1e-400`): its
 * text, which is valid JSON and finite. Every other number is read as a `number`, so its text is
 * `String(n)`, and the many that are plain integers cost no object.
 */
export class JsonNumber {
  constructor(readonly text: string) {}
}

/** An object: its members in order, any key named twice once each time. */
export class JsonObject {
  constructor(readonly members: readonly (readonly [string, JsonValue])[]) {}
}

export type JsonValue = null | boolean | number | string | JsonNumber | JsonValue[] | JsonObject;

/** serde_json's recursion limit: it refuses the 128th array or object nested in one another. */
export const MAX_DEPTH = 127;

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
/** A run of string characters that need no thought: not a quote, a backslash or a control character. */
const PLAIN = /[^"\\\u0000-\u001f]*/y;
const HEX4 = /[0-9a-fA-F]{4}/y;
const ESCAPES: Record<string, string> = { '"': '"', '\\': '\\', '/': '/', b: '\b', f: '\f', n: '\n', r: '\r', t: '\t' };
const LITERALS = [['true', true], ['false', false], ['null', null]] as const;

/** Parses `text` whole, or throws a `SyntaxError` that names what was wrong and the character (from 0) where. */
export function parseJson(text: string): JsonValue {
  let at = 0;
  const fail = (what: string): never => {
    throw new SyntaxError(`${what} at character ${at}`);
  };
  const space = (): void => {
    for (let c = text.charCodeAt(at); c === 0x20 || c === 0x0a || c === 0x0d || c === 0x09; c = text.charCodeAt(++at));
  };
  /** The text `pattern` (sticky) matches at `at`, which then moves past it; test() makes no match array. */
  const match = (pattern: RegExp): string | null => {
    pattern.lastIndex = at;
    if (!pattern.test(text)) return null;
    const from = at;
    at = pattern.lastIndex;
    return text.slice(from, at);
  };
  const hex = (): number => {
    const digits = match(HEX4);
    return digits === null ? fail('expected four hex digits after \\u') : parseInt(digits, 16);
  };
  const string = (): string => {
    at++; // the opening quote
    let out = '';
    for (;;) {
      out += match(PLAIN)!;
      const c = text[at];
      if (c === '"') {
        at++;
        return out;
      }
      if (c !== '\\') return fail(c === undefined ? 'a string not closed' : `control character U+${c.charCodeAt(0).toString(16).padStart(4, '0')} in a string`);
      const escape = text[++at];
      if (escape === undefined) fail('a string not closed');
      at++;
      if (escape === 'u') {
        const unit = hex();
        if (unit >= 0xdc00 && unit <= 0xdfff) fail(`a lone surrogate \\u${unit.toString(16)} in a string`);
        if (unit >= 0xd800 && unit <= 0xdbff) {
          // A leading surrogate is half a character: the other half must follow, escaped.
          const low = text.startsWith('\\u', at) ? (at += 2, hex()) : -1;
          if (low < 0xdc00 || low > 0xdfff) fail(`a lone surrogate \\u${unit.toString(16)} in a string`);
          out += String.fromCharCode(unit, low);
        } else {
          out += String.fromCharCode(unit);
        }
      } else if (Object.hasOwn(ESCAPES, escape)) {
        out += ESCAPES[escape];
      } else {
        at--;
        fail(`invalid escape \\${escape}`);
      }
    }
  };
  const value = (depth: number): JsonValue => {
    space();
    const c = text[at];
    if (c === '"') return string();
    if (c === '[' || c === '{') {
      if (depth === MAX_DEPTH) fail(`more than ${MAX_DEPTH} arrays and objects nested`);
      return c === '[' ? array(depth + 1) : object(depth + 1);
    }
    const start = at;
    const number = match(NUMBER);
    if (number !== null) {
      const n = Number(number);
      if (!Number.isFinite(n)) {
        at = start;
        fail(`number ${number} out of range`);
      }
      return String(n) === number ? n : new JsonNumber(number);
    }
    for (const [word, literal] of LITERALS) {
      if (text.startsWith(word, at)) {
        at += word.length;
        return literal;
      }
    }
    return fail('expected a value');
  };
  /** After a member: true where a comma brings another, false at `close`. */
  const next = (close: string): boolean => {
    space();
    if (text[at] === ',') return (at++, true);
    if (text[at] === close) return (at++, false);
    return fail(`expected , or ${close}`);
  };
  const array = (depth: number): JsonValue[] => {
    at++;
    const items: JsonValue[] = [];
    space();
    if (text[at] === ']') return (at++, items);
    do items.push(value(depth));
    while (next(']'));
    return items;
  };
  const object = (depth: number): JsonObject => {
    at++;
    const members: [string, JsonValue][] = [];
    space();
    if (text[at] === '}') return (at++, new JsonObject(members));
    do {
      space();
      if (text[at] !== '"') fail('expected a key in quotes');
      const key = string();
      space();
      if (text[at] !== ':') fail('expected :');
      at++;
      members.push([key, value(depth)]);
    } while (next('}'));
    return new JsonObject(members);
  };
  const parsed = value(0);
  space();
  if (at < text.length) fail('trailing characters');
  return parsed;
}

/** `value` as JSON text, each number as written: for messages. */
export function jsonText(value: JsonValue): string {
  if (value instanceof JsonNumber) return value.text;
  if (value instanceof JsonObject) return `{${value.members.map(([k, v]) => `${JSON.stringify(k)}:${jsonText(v)}`).join(',')}}`;
  if (Array.isArray(value)) return `[${value.map(jsonText).join(',')}]`;
  return JSON.stringify(value);
}
