/**
 * What a TorchScript archive (`torch.jit.save`, `torch.jit.trace(...).save`) says of its classes
 * in its code: which attributes of a module are its parameters and buffers (its `state_dict()`),
 * and a BatchNorm's eps and momentum.
 *
 * Such an archive holds its model in `data.pkl` as torch.save holds a state dict's tensors
 * (torch/csrc/jit/serialization/pickler.cpp: storages by the same persistent ids, in `data/<key>`),
 * each object pickled as `GLOBAL '__torch__.<qualifier>' '<Class>'`, `NEWOBJ` and `BUILD` with a
 * dict of all its attributes. What the attributes are is said only by the class's source, which
 * the archive keeps in `code/<qualifier as a path>.py` (export_module.cpp, `writeFiles`), printed
 * by PythonPrint:
 *
 *     class BatchNorm2d(Module):
 *       __parameters__ = ["weight", "bias", ]
 *       __buffers__ = ["running_mean", "running_var", "num_batches_tracked", ]
 *       ...
 *       eps : Final[float] = 1.0000000000000001e-05
 *       momentum : Final[float] = 0.10000000000000001
 *       def forward(self: ..., input: Tensor) -> Tensor:
 *
 * A scripted module keeps its constants as such `Final` lines; a traced one has none, and its
 * forward calls `torch.batch_norm(input, weight, bias, running_mean, running_var, training,
 * momentum, eps, cudnn_enabled)` with the values it was traced with. The eps of that call is the
 * module's; its momentum is not (tracing records 0.0 for momentum None in eval, and 1/n in
 * training), so a traced module's momentum is not read. The code is only read, never run.
 */
import type { FileHandle } from 'node:fs/promises';
import { FormatError } from './errors.js';
import { readZipEntry, type ZipEntry } from './zip.js';

/** The largest code record read (a model's code is kilobytes; a string past V8's length limit would throw a RangeError). */
export const MAX_CODE = 64 * 2 ** 20;

/** A TorchScript class as its code declares it. */
export interface ScriptClass {
  /** Whether it is an nn.Module (`class Name(Module):`); other classes' objects hold no state. */
  readonly module: boolean;
  /** The attributes that are its parameters and its buffers: its state. */
  readonly state: ReadonlySet<string>;
  /** Its eps: a `Final` constant, or the eps all its `torch.batch_norm` calls pass. */
  readonly eps?: number;
  /** Its momentum: a `Final` constant (null: None). */
  readonly momentum?: number | null;
}

/** A finite Python float as PythonPrint writes one (repr: `0.10000000000000001`, `1e-05`; `0.` for zero). */
const FLOAT = /^-?\d+(?:\.\d*)?(?:e[-+]?\d+)?$/;

/** A class statement at the top of a code file: `class Name(Base):`. */
const CLASS_LINE = /^class (\w+)\(([\w.]*)\):\s*$/;

/** A list of names as PythonPrint writes `__parameters__` and `__buffers__`: `["a", "b", ]`. */
const NAME_LIST = /^ {2}(__parameters__|__buffers__) = \[((?:"\w+", )*)\]\s*$/;

/** The call a traced BatchNorm's forward makes. */
const BATCH_NORM_CALL = 'torch.batch_norm(';

/** A class-level constant: `  name : Final[type] = value`. */
const FINAL_LINE = /^ {2}(eps|momentum) : Final\[[\w[\], ]*\] = (\S+)\s*$/;

/**
 * The classes of an archive's code, by qualified name: every `code/**.py` record under `folder`,
 * its qualifier its path with dots (import_export_helpers.cpp, qualifierToArchivePath, reversed).
 */
export async function readScriptClasses(handle: FileHandle, records: ReadonlyMap<string, ZipEntry>, folder: string): Promise<Map<string, ScriptClass>> {
  const classes = new Map<string, ScriptClass>();
  const code = `${folder}code/`;
  const decoder = new TextDecoder();
  for (const [name, entry] of records) {
    if (!name.startsWith(code) || !name.endsWith('.py')) continue;
    const qualifier = name.slice(code.length, -'.py'.length).replaceAll('/', '.');
    if (entry.size > MAX_CODE) throw new FormatError(`the TorchScript code record ${JSON.stringify(name)} is ${entry.size} bytes; bnpool reads code of up to ${MAX_CODE}`);
    for (const [qualified, c] of scriptClassesOf(qualifier, decoder.decode(await readZipEntry(handle, entry)))) classes.set(qualified, c);
  }
  return classes;
}

function floatOf(text: string): number | undefined {
  return FLOAT.test(text) ? Number(text.endsWith('.') ? text.slice(0, -1) : text) : undefined;
}

/**
 * The classes one code file declares, by qualified name (`<qualifier>.<Class>`). Lines the
 * format does not explain are passed over; a class whose lines say nothing of its state has none.
 */
export function scriptClassesOf(qualifier: string, source: string): Map<string, ScriptClass> {
  const classes = new Map<string, ScriptClass>();
  let current: ClassLines | null = null;
  const close = (): void => {
    if (current !== null) classes.set(`${qualifier}.${current.name}`, classOf(current));
    current = null;
  };
  for (const line of source.split('\n')) {
    const header = CLASS_LINE.exec(line);
    if (header !== null) {
      close();
      current = { name: header[1], module: header[2] === 'Module', state: new Set(), finals: new Map(), callEps: new Set(), calls: 0, readCalls: 0 };
      continue;
    }
    if (current === null) continue;
    if (line !== '' && !line.startsWith(' ')) {
      close();
      continue;
    }
    const names = NAME_LIST.exec(line);
    if (names !== null) {
      for (const quoted of names[2].split(', ')) if (quoted !== '') current.state.add(quoted.slice(1, -1));
      continue;
    }
    const final = FINAL_LINE.exec(line);
    if (final !== null) {
      const value = final[2] === 'None' ? null : floatOf(final[2]);
      if (value !== undefined && !(final[1] === 'eps' && value === null)) current.finals.set(final[1], value);
      continue;
    }
    for (let at = line.indexOf(BATCH_NORM_CALL); at >= 0; at = line.indexOf(BATCH_NORM_CALL, at + 1)) {
      if (at > 0 && /[\w.]/.test(line[at - 1])) continue; // a longer name that ends so
      current.calls++;
      const end = line.indexOf(')', at);
      const args = end < 0 ? [] : line.slice(at + BATCH_NORM_CALL.length, end).split(',').map((a) => a.trim());
      const eps = args.length === 9 ? floatOf(args[7]) : undefined;
      if (eps !== undefined) {
        current.callEps.add(eps);
        current.readCalls++;
      }
    }
  }
  close();
  return classes;
}

/** A class's lines as read so far. */
interface ClassLines {
  readonly name: string;
  readonly module: boolean;
  readonly state: Set<string>;
  readonly finals: Map<string, number | null>;
  /** The eps values of its `torch.batch_norm` calls, how many calls it makes, and of how many the eps is a literal. */
  readonly callEps: Set<number>;
  calls: number;
  readCalls: number;
}

/** A class from its lines: a `Final` eps, else the one eps every batch_norm call of it passes as a literal. */
function classOf(c: ClassLines): ScriptClass {
  const eps = c.finals.get('eps') ?? (c.calls > 0 && c.readCalls === c.calls && c.callEps.size === 1 ? [...c.callEps][0] : undefined);
  const momentum = c.finals.get('momentum');
  return {
    module: c.module,
    state: c.state,
    ...(typeof eps === 'number' ? { eps } : {}),
    ...(momentum !== undefined ? { momentum } : {}),
  };
}
