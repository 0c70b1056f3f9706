/**
 * A Python pickle read as data, never run (the opcodes of CPython's Lib/pickle.py, protocols 2 to
 * 5). It calls nothing: a global is its name (PyGlobal), a call or an object made from a class
 * is that name with its arguments and the state BUILD gave it (PyCall), and a caller interprets
 * the few it knows (PyTorch's tensor rebuild functions). Dicts, OrderedDicts and sets become
 * PyDict and PySet; lists are arrays, tuples frozen arrays; ints are numbers, or bigints past
 * 2^53; strings are strings and bytes Uint8Arrays. Every malformed stream is a `FormatError`.
 *
 * This is what PyTorch's `torch.load(weights_only=True)` unpickler does (torch/_weights_only_unpickler.py)
 * without its allowlist: since nothing is called, no global is dangerous, and a checkpoint that
 * also pickles an optimizer's or a training script's objects is still read for its tensors.
 */
import { FormatError } from './errors.js';
import { decodeSurrogatePass } from './utf8.js';

/** A global named by GLOBAL or STACK_GLOBAL: `collections.OrderedDict`, `torch._utils._rebuild_tensor_v2`, ... */
export class PyGlobal {
  constructor(readonly module: string, readonly name: string) {}

  get path(): string {
    return `${this.module}.${this.name}`;
  }
}

/** A call REDUCE or NEWOBJ describes (`func(*args)`), never made; BUILD's state, and items set or appended on it, kept. */
export class PyCall {
  state: unknown = undefined;
  /** Items SETITEM(S) put on it (a dict subclass), or APPEND(S) (a list subclass). */
  readonly items: PyDict = new PyDict(null);
  readonly appended: unknown[] = [];

  constructor(readonly func: unknown, readonly args: readonly unknown[]) {}
}

/** A dict, OrderedDict, Counter or defaultdict (`kind` names the class; null for a plain dict). */
export class PyDict {
  /** Keys as Python compares them where they are strings, numbers or bigints; other keys by identity. */
  readonly entries = new Map<unknown, unknown>();
  state: unknown = undefined;

  constructor(readonly kind: string | null) {}
}

/** A set or frozenset. */
export class PySet {
  readonly items: unknown[] = [];
}

/**
 * An integer of more than MAX_LONG_BYTES bytes (LONG1 or LONG4), not decoded: no size, offset or
 * count of a tensor is one, and decoding it would cost time quadratic in its length.
 */
export class PyLargeInt {
  constructor(readonly byteLength: number) {}
}

/** The longest integer decoded (512 bits; a LONG1 reaches 255 bytes, a LONG4 is longer). */
const MAX_LONG_BYTES = 64;

/** Globals whose calls make a dict: their REDUCE gives a PyDict that SETITEMS then fills. */
const DICT_CLASSES = new Set(['collections.OrderedDict', 'collections.Counter', 'collections.defaultdict', 'builtins.dict']);
/** Python 2 module names protocol 2 writes for builtins (pickle's compat mapping, the ones that matter here). */
const MODULE_NAMES: Readonly<Record<string, string>> = { __builtin__: 'builtins', copy_reg: 'copyreg' };

const utf8 = new TextDecoder('utf-8', { fatal: true });

/**
 * Reads one pickle from `bytes` starting at `start`: the value its STOP returns, and where the
 * pickle ended (a file of several pickles, as PyTorch's legacy format, reads on from there).
 * `persistentLoad` gives the value of each BINPERSID's id (PyTorch's storages).
 */
export function readPickle(bytes: Uint8Array, persistentLoad: (pid: unknown) => unknown, start = 0): { value: unknown; end: number } {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let at = start;
  // The byte of the opcode being read: each message names it, whatever operands were read since.
  let opAt = start;
  let stack: unknown[] = [];
  const marks: unknown[][] = [];
  const memo = new Map<number, unknown>();

  const need = (n: number, what: string): number => {
    if (at + n > bytes.length) throw new FormatError(`the pickle ends within ${what} at byte ${at}`);
    const here = at;
    at += n;
    return here;
  };
  const pop = (op: string): unknown => {
    if (stack.length === 0) throw new FormatError(`pickle opcode ${op} at byte ${opAt} finds its stack empty`);
    return stack.pop();
  };
  const top = (op: string): unknown => {
    if (stack.length === 0) throw new FormatError(`pickle opcode ${op} at byte ${opAt} finds its stack empty`);
    return stack[stack.length - 1];
  };
  const popMark = (op: string): unknown[] => {
    const items = stack;
    const outer = marks.pop();
    if (outer === undefined) throw new FormatError(`pickle opcode ${op} at byte ${opAt} has no MARK before it`);
    stack = outer;
    return items;
  };
  const decode = (from: number, to: number, what: string): string => {
    try {
      return utf8.decode(bytes.subarray(from, to));
    } catch {
      throw new FormatError(`${what} at byte ${from} of the pickle is not UTF-8`);
    }
  };
  const line = (what: string): string => {
    const end = bytes.indexOf(0x0a, at);
    if (end < 0) throw new FormatError(`the pickle ends within ${what} at byte ${at}`);
    const from = at;
    at = end + 1;
    return decode(from, end, what);
  };
  const text = (n: number, what: string): string => {
    const from = need(n, what);
    return decode(from, from + n, what);
  };
  /** A str's `n` bytes, read as CPython's unpickler reads them: UTF-8, a lone surrogate's bytes too ("surrogatepass"). */
  const unicode = (n: number, what: string): string => {
    const from = need(n, what);
    const text = decodeSurrogatePass(bytes.subarray(from, from + n));
    if (text === null) throw new FormatError(`${what} at byte ${from} of the pickle is not UTF-8, nor a lone surrogate's bytes`);
    return text;
  };
  const length64 = (what: string): number => {
    const n = view.getBigUint64(need(8, what), true);
    if (n > BigInt(Number.MAX_SAFE_INTEGER)) throw new FormatError(`${what} at byte ${opAt} has a length of ${n} bytes`);
    return Number(n);
  };
  const setItems = (target: unknown, pairs: unknown[], op: string): void => {
    const dict = target instanceof PyDict ? target : target instanceof PyCall ? target.items : null;
    if (dict === null) throw new FormatError(`pickle opcode ${op} at byte ${opAt} sets items on ${kindOf(target)}, not a dict`);
    if (pairs.length % 2 !== 0) throw new FormatError(`pickle opcode ${op} at byte ${opAt} has a key without a value`);
    for (let i = 0; i < pairs.length; i += 2) dict.entries.set(pairs[i], pairs[i + 1]);
  };
  const append = (target: unknown, items: unknown[], op: string): void => {
    if (Array.isArray(target) && !Object.isFrozen(target)) pushAll(target, items);
    else if (target instanceof PyCall) pushAll(target.appended, items);
    else throw new FormatError(`pickle opcode ${op} at byte ${opAt} appends to ${kindOf(target)}, not a list`);
  };
  const call = (func: unknown, args: unknown, op: string): unknown => {
    if (!Array.isArray(args)) throw new FormatError(`pickle opcode ${op} at byte ${opAt} has arguments ${kindOf(args)}, not a tuple`);
    if (func instanceof PyGlobal && DICT_CLASSES.has(func.path)) return new PyDict(func.path === 'builtins.dict' ? null : func.path);
    if (func instanceof PyGlobal && (func.path === 'builtins.set' || func.path === 'builtins.frozenset')) {
      const set = new PySet();
      if (Array.isArray(args[0])) pushAll(set.items, args[0]);
      return set;
    }
    if (func instanceof PyGlobal && func.path === '_codecs.encode' && args.length === 2 && typeof args[0] === 'string' && args[1] === 'latin1') {
      // Protocol 2's bytes: encode(text, 'latin1'), which fails on a character latin1 has not.
      const text = args[0];
      const past = text.search(/[^\0-\xff]/u);
      if (past >= 0) {
        const code = text.codePointAt(past)!.toString(16).toUpperCase().padStart(4, '0');
        throw new FormatError(`pickle opcode ${op} at byte ${opAt} encodes text as latin1 whose character ${past} is U+${code}, past latin1's 0xFF`);
      }
      return Uint8Array.from(text, (ch) => ch.charCodeAt(0));
    }
    // Protocol 2's empty bytes: bytes().
    if (func instanceof PyGlobal && func.path === 'builtins.bytes' && args.length === 0) return new Uint8Array(0);
    return new PyCall(func, args);
  };

  for (;;) {
    opAt = need(1, 'an opcode');
    const op = bytes[opAt];
    const name = String.fromCharCode(op);
    switch (op) {
      case 0x80: { // PROTO n: every protocol's opcodes are read alike; CPython refuses an n past 5
        const protocol = bytes[need(1, 'PROTO')];
        if (protocol > 5) throw new FormatError(`pickle PROTO at byte ${opAt} names protocol ${protocol}; pickle's are 0 to 5`);
        break;
      }
      case 0x95: need(8, 'FRAME'); break; // FRAME: a length hint, the opcodes go on inline
      // STOP: the top of the stack in use, as CPython's unpickler and torch.load's take it, a MARK still open or not.
      case 0x2e: return { value: pop('STOP'), end: at };
      case 0x28: marks.push(stack); stack = []; break; // MARK
      // POP: on an empty stack with a MARK open, CPython's unpickler pops the MARK.
      case 0x30: if (stack.length === 0 && marks.length > 0) popMark('POP'); else pop('POP'); break;
      case 0x31: popMark('POP_MARK'); break;
      case 0x32: stack.push(top('DUP')); break;
      case 0x4e: stack.push(null); break; // NONE
      case 0x88: stack.push(true); break; // NEWTRUE
      case 0x89: stack.push(false); break; // NEWFALSE
      case 0x4a: stack.push(view.getInt32(need(4, 'BININT'), true)); break;
      case 0x4b: stack.push(bytes[need(1, 'BININT1')]); break;
      case 0x4d: stack.push(view.getUint16(need(2, 'BININT2'), true)); break;
      case 0x8a: { // LONG1
        const n = bytes[need(1, 'LONG1')];
        stack.push(longOf(bytes.subarray(need(n, 'LONG1'), at)));
        break;
      }
      case 0x8b: { // LONG4
        const n = view.getInt32(need(4, 'LONG4'), true);
        if (n < 0) throw new FormatError(`pickle LONG4 at byte ${opAt} has a negative length`);
        stack.push(longOf(bytes.subarray(need(n, 'LONG4'), at)));
        break;
      }
      case 0x47: stack.push(view.getFloat64(need(8, 'BINFLOAT'), false)); break; // big-endian, as pickle writes it
      case 0x58: stack.push(unicode(view.getUint32(need(4, 'BINUNICODE'), true), 'BINUNICODE')); break;
      case 0x8c: stack.push(unicode(bytes[need(1, 'SHORT_BINUNICODE')], 'SHORT_BINUNICODE')); break;
      case 0x8d: stack.push(unicode(length64('BINUNICODE8'), 'BINUNICODE8')); break;
      // Python 2 str: torch.load decodes them as UTF-8 (its default encoding), as here.
      case 0x55: stack.push(text(bytes[need(1, 'SHORT_BINSTRING')], 'SHORT_BINSTRING')); break;
      case 0x54: {
        const n = view.getInt32(need(4, 'BINSTRING'), true);
        if (n < 0) throw new FormatError(`pickle BINSTRING at byte ${opAt} has a negative length`);
        stack.push(text(n, 'BINSTRING'));
        break;
      }
      case 0x43: { const n = bytes[need(1, 'SHORT_BINBYTES')]; stack.push(bytes.slice(need(n, 'SHORT_BINBYTES'), at)); break; }
      case 0x42: { const n = view.getUint32(need(4, 'BINBYTES'), true); stack.push(bytes.slice(need(n, 'BINBYTES'), at)); break; }
      case 0x8e: case 0x96: { const n = length64('BINBYTES8'); stack.push(bytes.slice(need(n, 'BINBYTES8'), at)); break; }
      case 0x29: stack.push(Object.freeze([])); break; // EMPTY_TUPLE
      case 0x74: { const items = popMark('TUPLE'); stack.push(Object.freeze(items)); break; } // popMark first: it replaces `stack`
      case 0x85: stack.push(Object.freeze([pop('TUPLE1')])); break;
      case 0x86: { const b = pop('TUPLE2'); const a = pop('TUPLE2'); stack.push(Object.freeze([a, b])); break; }
      case 0x87: { const c = pop('TUPLE3'); const b = pop('TUPLE3'); const a = pop('TUPLE3'); stack.push(Object.freeze([a, b, c])); break; }
      case 0x5d: stack.push([]); break; // EMPTY_LIST
      case 0x6c: { const items = popMark('LIST'); stack.push(items); break; }
      case 0x61: { const item = pop('APPEND'); append(top('APPEND'), [item], 'APPEND'); break; }
      case 0x65: { const items = popMark('APPENDS'); append(top('APPENDS'), items, 'APPENDS'); break; }
      case 0x7d: stack.push(new PyDict(null)); break; // EMPTY_DICT
      case 0x64: { const d = new PyDict(null); setItems(d, popMark('DICT'), 'DICT'); stack.push(d); break; }
      case 0x73: { const v = pop('SETITEM'); const k = pop('SETITEM'); setItems(top('SETITEM'), [k, v], 'SETITEM'); break; }
      case 0x75: { const items = popMark('SETITEMS'); setItems(top('SETITEMS'), items, 'SETITEMS'); break; }
      case 0x8f: stack.push(new PySet()); break; // EMPTY_SET
      case 0x90: { // ADDITEMS
        const items = popMark('ADDITEMS');
        const set = top('ADDITEMS');
        if (!(set instanceof PySet)) throw new FormatError(`pickle opcode ADDITEMS at byte ${opAt} adds to ${kindOf(set)}, not a set`);
        pushAll(set.items, items);
        break;
      }
      case 0x91: { const set = new PySet(); pushAll(set.items, popMark('FROZENSET')); stack.push(set); break; }
      case 0x63: { // GLOBAL module\nname\n
        const module = line('GLOBAL');
        stack.push(new PyGlobal(MODULE_NAMES[module] ?? module, line('GLOBAL')));
        break;
      }
      case 0x93: { // STACK_GLOBAL
        const globalName = pop('STACK_GLOBAL');
        const module = pop('STACK_GLOBAL');
        if (typeof module !== 'string' || typeof globalName !== 'string') throw new FormatError(`pickle STACK_GLOBAL at byte ${opAt} names ${kindOf(module)}.${kindOf(globalName)}`);
        stack.push(new PyGlobal(module, globalName));
        break;
      }
      case 0x52: { const args = pop('REDUCE'); stack.push(call(pop('REDUCE'), args, 'REDUCE')); break; }
      case 0x81: { const args = pop('NEWOBJ'); stack.push(call(pop('NEWOBJ'), args, 'NEWOBJ')); break; }
      case 0x92: { pop('NEWOBJ_EX'); const args = pop('NEWOBJ_EX'); stack.push(call(pop('NEWOBJ_EX'), args, 'NEWOBJ_EX')); break; }
      case 0x62: { // BUILD
        const state = pop('BUILD');
        const target = top('BUILD');
        if (target instanceof PyCall || target instanceof PyDict) target.state = state;
        else throw new FormatError(`pickle opcode BUILD at byte ${opAt} builds ${kindOf(target)}, not an object`);
        break;
      }
      case 0x51: stack.push(persistentLoad(pop('BINPERSID'))); break;
      case 0x68: stack.push(recall(memo, bytes[need(1, 'BINGET')], 'BINGET', opAt)); break;
      case 0x6a: stack.push(recall(memo, view.getUint32(need(4, 'LONG_BINGET'), true), 'LONG_BINGET', opAt)); break;
      case 0x71: memo.set(bytes[need(1, 'BINPUT')], top('BINPUT')); break;
      case 0x72: memo.set(view.getUint32(need(4, 'LONG_BINPUT'), true), top('LONG_BINPUT')); break;
      case 0x94: memo.set(memo.size, top('MEMOIZE')); break;
      default:
        throw new FormatError(`pickle opcode 0x${op.toString(16).padStart(2, '0')}${op >= 0x20 && op < 0x7f ? ` (${JSON.stringify(name)})` : ''} at byte ${opAt} is not read: bnpool reads the binary opcodes of protocols 2 to 5`);
    }
  }
}

/** `target.push(...items)` without spreading: a MARK may hold more items than a call takes arguments. */
function pushAll(target: unknown[], items: readonly unknown[]): void {
  for (const item of items) target.push(item);
}

function recall(memo: Map<number, unknown>, index: number, op: string, at: number): unknown {
  if (!memo.has(index)) throw new FormatError(`pickle opcode ${op} at byte ${at} recalls memo ${index}, which was never stored`);
  return memo.get(index);
}

/** A LONG1 or LONG4 integer: decoded up to MAX_LONG_BYTES bytes, else its length alone. */
function longOf(bytes: Uint8Array): number | bigint | PyLargeInt {
  return bytes.length > MAX_LONG_BYTES ? new PyLargeInt(bytes.length) : decodeLong(bytes);
}

/** A little-endian two's-complement integer (LONG1, LONG4): a number where safe, else a bigint. */
function decodeLong(bytes: Uint8Array): number | bigint {
  let value = 0n;
  for (let i = bytes.length - 1; i >= 0; i--) value = (value << 8n) | BigInt(bytes[i]);
  if (bytes.length > 0 && bytes[bytes.length - 1] & 0x80) value -= 1n << BigInt(8 * bytes.length);
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

/** What a value is, for messages. */
export function kindOf(value: unknown): string {
  if (value === null) return 'None';
  if (value instanceof PyGlobal) return value.path;
  if (value instanceof PyCall) return `a ${value.func instanceof PyGlobal ? value.func.path : 'call'} object`;
  if (value instanceof PyDict) return value.kind === null ? 'a dict' : `a ${value.kind}`;
  if (value instanceof PySet) return 'a set';
  if (value instanceof PyLargeInt) return `an integer of ${value.byteLength} bytes`;
  if (Array.isArray(value)) return `a ${Object.isFrozen(value) ? 'tuple' : 'list'} of ${value.length} item${value.length === 1 ? '' : 's'}`;
  if (value instanceof Uint8Array) return `${value.length} bytes`;
  return typeof value === 'string' ? JSON.stringify(value.slice(0, 40)) : String(value);
}
