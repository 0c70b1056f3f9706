// The lines of the workers' code (workers/, as built in dist/workers/) that no worker thread ran
// during the tests. `npm run coverage` measures the test processes' own code, through V8's
// coverage of them, and cannot see the worker threads; Node writes each thread's coverage where
// NODE_V8_COVERAGE points as the thread ends, piscina's workers included. Run by hand:
//
//     node test/worker-coverage.mjs                          # the whole suite (5-6.5 minutes here)
//     node test/worker-coverage.mjs test/abort.test.ts ...   # those files only
//
// It builds, runs vitest with NODE_V8_COVERAGE set to a temporary folder, adds up the counts of
// every script under dist/workers/ over every thread and process that wrote one, and prints each
// source file's lines (workers/*.ts, through the build's source maps) of which no part ran.
// vitest's own test processes end without writing theirs, so code run only on the calling
// thread (inline calls run the same tasks there) counts as not run: read a line it prints as
// "never run in a worker thread". The WebAssembly kernels are not JavaScript and are not counted.
// Plain JavaScript, like test/mutants.mjs.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, relative } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const prefix = pathToFileURL(join(root, 'dist', 'workers')).href + '/';

/** Per-offset run counts of one script, summed over every coverage file that holds it. */
function countsOf(dir) {
  const scripts = new Map();
  for (const name of readdirSync(dir)) {
    const { result } = JSON.parse(readFileSync(join(dir, name), 'utf8'));
    for (const script of result) {
      if (!script.url.startsWith(prefix) || !/\.c?js$/.test(script.url)) continue;
      let total = scripts.get(script.url);
      if (total === undefined) {
        const source = readFileSync(fileURLToPath(script.url), 'utf8');
        scripts.set(script.url, total = { source, hits: new Float64Array(source.length) });
      }
      const { source } = total;
      // Block ranges nest inside their function's: the innermost range holding an offset counts,
      // so the ranges are laid down largest first.
      const ranges = script.functions.flatMap((f) => f.ranges)
        .sort((a, b) => (b.endOffset - b.startOffset) - (a.endOffset - a.startOffset));
      const here = new Float64Array(source.length);
      for (const r of ranges) here.fill(r.count, r.startOffset, Math.min(r.endOffset, source.length));
      for (let i = 0; i < here.length; i++) total.hits[i] += here[i];
    }
  }
  return scripts;
}

const BASE64 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/';

/** For each line of the built file, the line of the source (0-based) its first mapped segment comes from. */
function sourceLines(map) {
  const lines = [];
  let line = 0;
  for (const generated of map.mappings.split(';')) {
    let first = -1;
    for (const segment of generated.split(',').filter(Boolean)) {
      const fields = [];
      let value = 0;
      let shift = 0;
      for (const ch of segment) {
        const digit = BASE64.indexOf(ch);
        value += (digit & 31) << shift;
        if (digit & 32) {
          shift += 5;
          continue;
        }
        fields.push(value & 1 ? -(value >>> 1) : value >>> 1);
        value = 0;
        shift = 0;
      }
      // Fields: generated column, source index (one source a file here), source line, column.
      if (fields.length >= 4) {
        line += fields[2];
        if (first < 0) first = line;
      }
    }
    lines.push(first);
  }
  return lines;
}

/** The source lines of `url`'s never-run code: built lines with code of which no character ran. */
function neverRun(url, { source, hits }) {
  const map = JSON.parse(readFileSync(fileURLToPath(url) + '.map', 'utf8'));
  const toSource = sourceLines(map);
  const original = join(dirname(fileURLToPath(url)), map.sources[0]);
  const lines = [];
  let offset = 0;
  source.split('\n').forEach((text, i) => {
    const code = text.trim();
    const ran = [...text].some((ch, j) => !/\s/.test(ch) && hits[offset + j] > 0);
    offset += text.length + 1;
    // Comments and lone closing braces carry no count of their own.
    if (code === '' || ran || /^(\/\/|\/\*|\*|[}\])]+;?$)/.test(code) || toSource[i] < 0) return;
    lines.push(toSource[i] + 1);
  });
  return { file: relative(root, original), lines: [...new Set(lines)].sort((a, b) => a - b) };
}

const files = process.argv.slice(2);
const build = spawnSync('npm', ['run', 'build'], { cwd: root, encoding: 'utf8' });
if (build.status !== 0) throw new Error(`the build failed:\n${build.stdout}${build.stderr}`);
const dir = mkdtempSync(join(tmpdir(), 'bnpool-worker-coverage-'));
try {
  const run = spawnSync('npx', ['vitest', 'run', ...files], {
    cwd: root, encoding: 'utf8', env: { ...process.env, NODE_V8_COVERAGE: dir, NO_COLOR: '1' }, maxBuffer: 256 << 20,
  });
  const summary = run.stdout.split('\n').filter((l) => /^\s*(Test Files|Tests)\s/.test(l)).join('\n');
  console.log(summary);
  if (run.status !== 0) console.log('(the tests failed: the counts below are of the run as it went)');
  const scripts = countsOf(dir);
  for (const [url, counts] of [...scripts].sort()) {
    const { file, lines } = neverRun(url, counts);
    const source = readFileSync(join(root, file), 'utf8').split('\n');
    console.log(`\n${file}: ${lines.length} line(s) never run in a worker thread`);
    for (const line of lines) console.log(`  ${line}: ${source[line - 1].trim().slice(0, 100)}`);
  }
} finally {
  rmSync(dir, { recursive: true, force: true });
}
