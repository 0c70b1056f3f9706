/**
 * A Python pickle written, protocol 2, opcode for opcode as CPython's `pickle.Pickler`
 * (Lib/pickle.py) writes the objects a `torch.save` of a state dict holds: globals, strings,
 * small integers, tuples, dicts made by REDUCE, persistent ids. The caller walks its objects and
 * says which are one object met again (a global, a string CPython shares): those are written once
 * and fetched from the memo after, as `Pickler.save` does by `id(obj)`; everything memoizable is
 * put in the memo as CPython puts it, so that the memo's indices, hence the bytes, are Python's.
 * pickle.ts reads what this writes.
 */
import { encodeSurrogatePass } from './utf8.js';

/** The opcodes written (Lib/pickle.py's names). */
const MARK = 0x28;
const STOP = 0x2e;
const EMPTY_TUPLE = 0x29;
const BININT = 0x4a;
const BININT1 = 0x4b;
const BININT2 = 0x4d;
const BINPERSID = 0x51;
const REDUCE = 0x52;
const BINUNICODE = 0x58;
const BUILD = 0x62;
const GLOBAL = 0x63;
const BINGET = 0x68;
const LONG_BINGET = 0x6a;
const BINPUT = 0x71;
const LONG_BINPUT = 0x72;
const SETITEM = 0x73;
const TUPLE = 0x74;
const SETITEMS = 0x75;
const EMPTY_DICT = 0x7d;
const PROTO = 0x80;
const LONG1 = 0x8a;
const TUPLE1 = 0x85;
const NEWFALSE = 0x89;

/** Items a SETITEMS sets at most: CPython's `_BATCHSIZE`. */
export const BATCH_SIZE = 1000;

const utf8 = new TextEncoder();

/** A protocol-2 pickle, written one object at a time; `end()` gives its bytes. */
export class PickleWriter {
  private bytes = new Uint8Array(4096);
  private length = 0;
  private memoSize = 0;
  /** Memo indices of the objects that are one Python object wherever they appear (by a key the caller gives). */
  private readonly shared = new Map<string, number>();

  constructor() {
    this.op(PROTO, 2);
  }

  /** `module.name` by GLOBAL, memoized; the same global again is fetched from the memo. */
  global(module: string, name: string): void {
    if (this.fetch(`global ${module} ${name}`)) return;
    this.op(GLOBAL);
    this.put(utf8.encode(`${module}\n${name}\n`));
    this.memoize(`global ${module} ${name}`);
  }

  /**
   * A str by BINUNICODE, memoized, its UTF-8 "surrogatepass" as `save_str` encodes it (a lone
   * surrogate as its three bytes). `shared`: the same Python object wherever this text is
   * written with `shared` (an interned constant, or a string of one Latin-1 character, which
   * CPython keeps one of), so that it is fetched from the memo after its first time.
   */
  str(text: string, shared: boolean): void {
    if (shared && this.fetch(`str ${text}`)) return;
    const encoded = encodeSurrogatePass(text);
    this.op(BINUNICODE);
    this.u32(encoded.length);
    this.put(encoded);
    this.memoize(shared ? `str ${text}` : undefined);
  }

  /** A non-negative integer, as `save_long` writes it: BININT1, BININT2, BININT, then LONG1. */
  int(n: number): void {
    if (!Number.isSafeInteger(n) || n < 0) throw new RangeError(`the pickle writer takes non-negative safe integers; got ${n}`);
    if (n <= 0xff) {
      this.op(BININT1, n);
    } else if (n <= 0xffff) {
      this.op(BININT2, n & 0xff, n >>> 8);
    } else if (n <= 0x7fffffff) {
      this.op(BININT);
      this.u32(n);
    } else {
      // Two's complement, little-endian, in (bit length >> 3) + 1 bytes (`encode_long`).
      const digits: number[] = [];
      for (let v = BigInt(n); v > 0n; v >>= 8n) digits.push(Number(v & 0xffn));
      if ((digits[digits.length - 1] & 0x80) !== 0) digits.push(0);
      this.op(LONG1, digits.length, ...digits);
    }
  }

  false(): void {
    this.op(NEWFALSE);
  }

  emptyTuple(): void {
    this.op(EMPTY_TUPLE);
  }

  /** `{}` by EMPTY_DICT, memoized. */
  emptyDict(): void {
    this.op(EMPTY_DICT);
    this.memoize(undefined);
  }

  mark(): void {
    this.op(MARK);
  }

  /** The items since the last mark as a tuple (TUPLE), memoized; tuples of 1 use tuple1. */
  tuple(): void {
    this.op(TUPLE);
    this.memoize(undefined);
  }

  /** The last item as a 1-tuple (TUPLE1, protocol 2's form for it), memoized. */
  tuple1(): void {
    this.op(TUPLE1);
    this.memoize(undefined);
  }

  /** The callable and argument tuple before it called (REDUCE); its result memoized. */
  reduce(): void {
    this.op(REDUCE);
    this.memoize(undefined);
  }

  /** The tuple before it as a persistent id (BINPERSID): what `persistent_id` returned for an object. */
  persistentId(): void {
    this.op(BINPERSID);
  }

  /** One key and value set on the dict under them. */
  setItem(): void {
    this.op(SETITEM);
  }

  /** The keys and values since the last mark set on the dict under them. */
  setItems(): void {
    this.op(SETITEMS);
  }

  /** The state before it given to the object under it (BUILD). */
  build(): void {
    this.op(BUILD);
  }

  /** STOP, and the pickle's bytes. */
  end(): Uint8Array {
    this.op(STOP);
    return this.bytes.slice(0, this.length);
  }

  /** Writes a memo fetch (BINGET, LONG_BINGET) where the object under `key` is in the memo. */
  private fetch(key: string): boolean {
    const index = this.shared.get(key);
    if (index === undefined) return false;
    if (index < 256) {
      this.op(BINGET, index);
    } else {
      this.op(LONG_BINGET);
      this.u32(index);
    }
    return true;
  }

  /** Puts the object just written at the memo's next index (BINPUT, LONG_BINPUT), as `Pickler.memoize` does. */
  private memoize(key: string | undefined): void {
    const index = this.memoSize++;
    if (index < 256) {
      this.op(BINPUT, index);
    } else {
      this.op(LONG_BINPUT);
      this.u32(index);
    }
    if (key !== undefined) this.shared.set(key, index);
  }

  private op(...bytes: number[]): void {
    this.put(bytes);
  }

  private u32(n: number): void {
    this.put([n & 0xff, (n >>> 8) & 0xff, (n >>> 16) & 0xff, n >>> 24]);
  }

  private put(bytes: ArrayLike<number>): void {
    if (this.length + bytes.length > this.bytes.length) {
      const grown = new Uint8Array(Math.max(this.bytes.length * 2, this.length + bytes.length));
      grown.set(this.bytes.subarray(0, this.length));
      this.bytes = grown;
    }
    this.bytes.set(bytes, this.length);
    this.length += bytes.length;
  }
}
