/**
 * The header JSON reader (src/json-text.ts) against JSON.parse, the grammar's other reader here:
 * on any JSON text (fast-check's), and on texts with a character replaced, inserted or cut, it
 * accepts what JSON.parse accepts, with the same values, unless the text holds what serde_json
 * refuses and JSON.parse takes (a lone surrogate, a number past float64, nesting past 127), and
 * refuses the rest. Then those rules, and the number texts and repeated keys it keeps, one by one.
 * `BNPOOL_JSON_TEXTS` and `BNPOOL_JSON_SEED` run a longer search.
 */
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonNumber, JsonObject, type JsonValue, MAX_DEPTH, jsonText, parseJson } from '../dist/src/json-text.js';

const RUNS = Number(process.env.BNPOOL_JSON_TEXTS ?? 400);
const SEED = Number(process.env.BNPOOL_JSON_SEED ?? 1);

/** `value` as JSON.parse gives it: numbers as numbers, an object's key named twice as its last value. */
function plain(value: JsonValue): unknown {
  if (value instanceof JsonNumber) return Number(value.text);
  if (value instanceof JsonObject) return Object.fromEntries(value.members.map(([k, v]) => [k, plain(v)]));
  if (Array.isArray(value)) return value.map(plain);
  return value;
}

/** Why serde_json refuses a value JSON.parse gave, or null where it reads it too. */
function serdeRefuses(value: unknown, depth = 0): string | null {
  if (typeof value === 'number') return Number.isFinite(value) ? null : 'range';
  if (typeof value === 'string') return value.isWellFormed() ? null : 'surrogate';
  if (value === null || typeof value !== 'object') return null;
  if (depth === MAX_DEPTH) return 'depth';
  const inner = Array.isArray(value) ? value : Object.entries(value).flat();
  for (const item of inner) {
    const why = serdeRefuses(item, depth + 1);
    if (why !== null) return why;
  }
  return null;
}

function jsonParse(text: string): { value: unknown } | null {
  try {
    return { value: JSON.parse(text) };
  } catch {
    return null;
  }
}

/** parseJson's answer as JSON.parse's should read: its value, or null for a SyntaxError. */
function ours(text: string): { value: unknown } | null {
  try {
    return { value: plain(parseJson(text)) };
  } catch (err) {
    expect(err).toBeInstanceOf(SyntaxError);
    expect((err as Error).message).toMatch(/ at character \d+$/);
    return null;
  }
}

function agrees(text: string): void {
  const theirs = jsonParse(text);
  const mine = ours(text);
  if (theirs === null || serdeRefuses(theirs.value) !== null) expect(mine, text).toBeNull();
  else expect(mine, text).toEqual(theirs);
}

/** Characters an edit draws from: JSON's syntax, escapes' parts, and some that are neither. */
const EDITS = [...'{}[]",:\\/ \t\n\r\f0123456789.eE+-tfnulrsabxu', 'ud800', 'udc00', '\\ud83d', '\\u00e9', '\u00e9', '\u2028', '\u0000', '\u001f', '\ud83d\ude00'];

describe('parseJson, against JSON.parse', () => {
  it('reads any JSON text as JSON.parse does, indented or not', () => {
    fc.assert(fc.property(fc.jsonValue(), fc.constantFrom(0, 1, '\t', '\r\n'), (value, indent) => {
      const text = typeof indent === 'string' && indent.startsWith('\r')
        ? JSON.stringify(value, null, 1).replaceAll('\n', '\r\n')
        : JSON.stringify(value, null, indent);
      expect(plain(parseJson(text))).toEqual(JSON.parse(text));
    }), { numRuns: RUNS, seed: SEED });
  });

  it('accepts and refuses as JSON.parse does when a character is replaced, inserted or cut, but for serde_json\'s own rules', () => {
    fc.assert(fc.property(
      fc.json(),
      fc.array(fc.record({ at: fc.nat(), cut: fc.nat({ max: 2 }), put: fc.constantFrom(...EDITS, '') }), { minLength: 1, maxLength: 3 }),
      (json, edits) => {
        let text = json;
        for (const { at, cut, put } of edits) {
          const i = at % (text.length + 1);
          text = text.slice(0, i) + put + text.slice(i + cut);
        }
        // parseJson reads decoded UTF-8, which holds no lone surrogate unescaped: an edit that
        // splits a pair is not its input.
        fc.pre(text.isWellFormed());
        agrees(text);
      },
    ), { numRuns: RUNS * 5, seed: SEED });
  });

  it('keeps every number\'s text (a number where String() writes it so), and reads its value as JSON.parse does', () => {
    const number = fc.tuple(
      fc.boolean(), fc.oneof(fc.constant('0'), fc.bigInt({ min: 1n, max: 10n ** 30n }).map(String)),
      fc.option(fc.stringMatching(/^\.[0-9]{1,20}$/)), fc.option(fc.stringMatching(/^[eE][+-]?[0-9]{1,3}$/)),
    ).map(([minus, whole, fraction, exponent]) => `${minus ? '-' : ''}${whole}${fraction ?? ''}${exponent ?? ''}`);
    fc.assert(fc.property(fc.array(number, { minLength: 1, maxLength: 4 }), (texts) => {
      const text = `[${texts.join(' , ')}]`;
      const parsed = jsonParse(text)!.value as number[];
      if (parsed.every(Number.isFinite)) {
        expect((parseJson(text) as JsonValue[]).map(jsonText)).toEqual(texts);
        expect(plain(parseJson(text))).toEqual(parsed);
      } else {
        expect(() => parseJson(text)).toThrow(/^number \S+ out of range at character \d+$/);
      }
    }), { numRuns: RUNS, seed: SEED });
  });
});

describe('parseJson, by serde_json\'s rules', () => {
  it('keeps each object\'s members in order, a key named twice each time, "__proto__" a key like any other', () => {
    const parsed = parseJson('{"b":1,"a":{"k":2.0,"k":"x"},"b":null,"__proto__":[]}') as JsonObject;
    expect(parsed.members.map(([k]) => k)).toEqual(['b', 'a', 'b', '__proto__']);
    expect(jsonText(parsed)).toBe('{"b":1,"a":{"k":2.0,"k":"x"},"b":null,"__proto__":[]}');
    expect(Object.getPrototypeOf(plain(parsed))).toBe(Object.prototype);
    expect(Object.keys(plain(parsed) as object)).toEqual(['b', 'a', '__proto__']);
  });

  it('reads every escape, a surrogate pair escaped, and characters JSON.parse takes raw', () => {
    expect(parseJson(String.raw`"\" \\ \/ \b \f \n \r \t \u00e9\u00E9 \ud83d\ude00 \u0000"`)).toBe('" \\ / \b \f \n \r \t éé 😀 \u0000');
    expect(parseJson('"\u007f\u2028é😀"')).toBe('\u007f\u2028é😀');
    expect(parseJson(' \t\r\n{ "a" : [ true , false , null ] } \n')).toEqual(new JsonObject([['a', [true, false, null]]]));
  });

  it(`reads ${MAX_DEPTH} arrays and objects nested, and refuses one more`, () => {
    const nested = (levels: number) => '[{"a":'.repeat(levels / 2) + '0' + '}]'.repeat(levels / 2);
    const deep = '['.repeat(MAX_DEPTH) + ']'.repeat(MAX_DEPTH);
    expect(jsonText(parseJson(deep))).toBe(deep);
    expect(plain(parseJson(nested(126)))).toEqual(JSON.parse(nested(126)));
    expect(() => parseJson(`[${deep}]`)).toThrow(`more than 127 arrays and objects nested at character ${MAX_DEPTH}`);
    expect(() => parseJson(nested(128))).toThrow('more than 127 arrays and objects nested at character 379');
  });

  it('refuses what JSON.parse takes and serde_json does not, and names what and where', () => {
    const refused: [string, string][] = [
      [String.raw`"\ud800"`, String.raw`a lone surrogate \ud800 in a string at character 7`],
      [String.raw`"\udc00"`, String.raw`a lone surrogate \udc00 in a string at character 7`],
      [String.raw`{"a\ud800x":1}`, String.raw`a lone surrogate \ud800 in a string at character 9`],
      [String.raw`["\ud83d\u0041"]`, String.raw`a lone surrogate \ud83d in a string at character 14`],
      [String.raw`["\ud83d\ud83d"]`, String.raw`a lone surrogate \ud83d in a string at character 14`],
      ['[1e400]', 'number 1e400 out of range at character 1'],
      ['{"x":-1.8e308}', 'number -1.8e308 out of range at character 5'],
    ];
    for (const [text, message] of refused) {
      expect(JSON.parse(text), text).toBeDefined();
      expect(() => parseJson(text), text).toThrow(new SyntaxError(message));
    }
    // Small enough to be 0 is a number still, as for both.
    expect(parseJson('[1e-400, -0, 0, 1e21, 2.0]')).toEqual([new JsonNumber('1e-400'), new JsonNumber('-0'), 0, new JsonNumber('1e21'), new JsonNumber('2.0')]);
  });

  it('refuses what both refuse, and names what and where', () => {
    const refused: [string, string][] = [
      ['', 'expected a value at character 0'],
      ['{"a":1,}', 'expected a key in quotes at character 7'],
      ['[1,]', 'expected a value at character 3'],
      ['{"a" 1}', 'expected : at character 5'],
      ['[1 2]', 'expected , or ] at character 3'],
      ['{"a":1 "b":2}', 'expected , or } at character 7'],
      ['[01]', 'expected , or ] at character 2'],
      ['[+1]', 'expected a value at character 1'],
      ['[1.]', 'expected , or ] at character 2'],
      ['[.5]', 'expected a value at character 1'],
      ['[1e]', 'expected , or ] at character 2'],
      ['"a', 'a string not closed at character 2'],
      ['"a\\', 'a string not closed at character 3'],
      ['"\t"', 'control character U+0009 in a string at character 1'],
      ['"\\x"', 'invalid escape \\x at character 2'],
      ['"\\u12g4"', 'expected four hex digits after \\u at character 3'],
      ['{} {}', 'trailing characters at character 3'],
      ['\f{}', 'expected a value at character 0'],
      ['tru', 'expected a value at character 0'],
      ['\ufeff{}', 'expected a value at character 0'],
    ];
    for (const [text, message] of refused) {
      expect(() => JSON.parse(text), text).toThrow(SyntaxError);
      expect(() => parseJson(text), text).toThrow(new SyntaxError(message));
    }
  });
});
