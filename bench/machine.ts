/**
 * The machine a benchmark ran on, in one line for its results: the CPU's model and, where the OS
 * tells them, its family and model numbers and its data caches, then the threads available, the
 * memory and Node's version. This project's VMs changed under it six times, some with the same
 * model name ("AMD EPYC"): the caches and the family told them apart (bench/MACHINES.md).
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { availableParallelism, cpus, totalmem } from 'node:os';

/** What describeMachine reports; null where the OS did not tell. */
export interface MachineFacts {
  readonly model: string;
  readonly family: number | null;
  readonly modelNumber: number | null;
  /** Bytes of the L1 data cache, the L2 and the L3 (a core's, or shared, as the OS reports them). */
  readonly caches: readonly [l1d: number | null, l2: number | null, l3: number | null];
  readonly threads: number;
  readonly memoryBytes: number;
  readonly node: string;
}

/** `bytes` as KiB, MiB or GiB, whichever is whole or shortest. */
function size(bytes: number): string {
  for (const [unit, scale] of [['GiB', 2 ** 30], ['MiB', 2 ** 20]] as const) {
    if (bytes >= scale && bytes % scale === 0) return `${bytes / scale} ${unit}`;
  }
  return bytes >= 2 ** 20 ? `${(bytes / 2 ** 20).toFixed(1)} MiB` : `${Math.round(bytes / 1024)} KiB`;
}

/** The line: "AMD EPYC (family 26, model 2; L1d 48 KiB, L2 1 MiB, L3 508 MiB), 2 threads available, 24 GiB, Node v20.20.2". */
export function formatMachine(facts: MachineFacts): string {
  const details: string[] = [];
  if (facts.family !== null) details.push(`family ${facts.family}${facts.modelNumber === null ? '' : `, model ${facts.modelNumber}`}`);
  const caches = (['L1d', 'L2', 'L3'] as const)
    .map((name, i) => (facts.caches[i] === null ? null : `${name} ${size(facts.caches[i]!)}`))
    .filter((c) => c !== null);
  if (caches.length > 0) details.push(caches.join(', '));
  const cpu = details.length > 0 ? `${facts.model} (${details.join('; ')})` : facts.model;
  return `${cpu}, ${facts.threads} threads available, ${(facts.memoryBytes / 2 ** 30).toFixed(0)} GiB, Node ${facts.node}`;
}

/** A `/proc/cpuinfo` field of the first CPU as a number, or null (not Linux, or no such field). */
function cpuinfoNumber(cpuinfo: string, field: string): number | null {
  const match = new RegExp(`^${field}\\s*:\\s*(\\d+)\\s*$`, 'm').exec(cpuinfo);
  return match === null ? null : Number(match[1]);
}

/** glibc's `getconf -a` (every value it knows, the caches' asked of the CPU itself), or '' where there is none. */
function getconfAll(): string {
  try {
    return execFileSync('getconf', ['-a'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'], timeout: 2000 });
  } catch {
    return '';
  }
}

/** A positive value of `getconf -a`'s output, or null (absent, empty or 0: not told). */
function getconfBytes(all: string, name: string): number | null {
  const match = new RegExp(`^${name}\\s+(\\d+)\\s*$`, 'm').exec(all);
  const value = match === null ? 0 : Number(match[1]);
  return value > 0 ? value : null;
}

/** This machine's facts, as far as the OS tells them (Linux: /proc/cpuinfo and getconf). */
export function machineFacts(threads = availableParallelism()): MachineFacts {
  let cpuinfo = '';
  try {
    cpuinfo = readFileSync('/proc/cpuinfo', 'utf8');
  } catch {
    // Not Linux: the model name only.
  }
  const getconf = getconfAll();
  return {
    model: cpus()[0]?.model.trim() || 'unknown CPU',
    family: cpuinfoNumber(cpuinfo, 'cpu family'),
    modelNumber: cpuinfoNumber(cpuinfo, 'model'),
    caches: [getconfBytes(getconf, 'LEVEL1_DCACHE_SIZE'), getconfBytes(getconf, 'LEVEL2_CACHE_SIZE'), getconfBytes(getconf, 'LEVEL3_CACHE_SIZE')],
    threads,
    memoryBytes: totalmem(),
    node: process.version,
  };
}

/** The line for this machine (formatMachine of machineFacts). */
export function describeMachine(threads?: number): string {
  return formatMachine(machineFacts(threads));
}
