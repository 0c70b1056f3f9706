/**
 * The public API and its documentation stay in step (house style: TSDoc on every public symbol,
 * an `@example` on every class and function; undici keeps errors, exports and docs in sync by a
 * test): read from src/index.ts with TypeScript's own checker, and from the README's Errors table
 * and Layout (every source file of src/ and workers/ named there), and the mutation check's
 * mutants (still in the source).
 */
import { spawnSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import ts from 'typescript';
import { describe, expect, it } from 'vitest';
import * as bnpool from '../dist/src/index.js';

const root = new URL('..', import.meta.url).pathname;
const program = ts.createProgram([`${root}src/index.ts`], {
  module: ts.ModuleKind.NodeNext, moduleResolution: ts.ModuleResolutionKind.NodeNext, target: ts.ScriptTarget.ES2022, strict: true,
});
const checker = program.getTypeChecker();
const exportsOfIndex = checker.getExportsOfModule(checker.getSymbolAtLocation(program.getSourceFile(`${root}src/index.ts`)!)!)
  .map((s) => ({ name: s.name, symbol: s.flags & ts.SymbolFlags.Alias ? checker.getAliasedSymbol(s) : s }));

function documented(symbol: ts.Symbol): boolean {
  return ts.displayPartsToString(symbol.getDocumentationComment(checker)).trim().length > 0;
}

/** The public members of a class (not `#private` ones, not `private`), as `Class.member`. */
function publicMembers(name: string, symbol: ts.Symbol): { name: string; symbol: ts.Symbol }[] {
  const decl = symbol.declarations!.find(ts.isClassDeclaration)!;
  return decl.members
    .filter((m) => m.name !== undefined && !ts.isPrivateIdentifier(m.name) && !ts.isConstructorDeclaration(m)
      && !(ts.getCombinedModifierFlags(m) & ts.ModifierFlags.Private))
    .map((m) => ({ name: `${name}.${m.name!.getText()}`, symbol: checker.getSymbolAtLocation(m.name!)! }));
}

describe('TSDoc of the public API', () => {
  it('reads the exports (a check that nothing was found would pass on anything)', () => {
    expect(exportsOfIndex.map((e) => e.name)).toEqual(expect.arrayContaining(['Pool', 'BatchNorm', 'batchNorm', 'ChannelStats', 'BnPoolError']));
    expect(publicMembers('BatchNorm', exportsOfIndex.find((e) => e.name === 'BatchNorm')!.symbol).length).toBeGreaterThan(20);
  });

  it('documents every export, and every public member of an exported class', () => {
    const undocumented = exportsOfIndex.flatMap(({ name, symbol }) => [
      ...(documented(symbol) ? [] : [name]),
      ...(symbol.flags & ts.SymbolFlags.Class ? publicMembers(name, symbol).filter((m) => !documented(m.symbol)).map((m) => m.name) : []),
    ]);
    expect(undocumented).toEqual([]);
  });

  it('gives every exported class and function an @example', () => {
    const without = exportsOfIndex
      .filter(({ symbol }) => symbol.flags & (ts.SymbolFlags.Class | ts.SymbolFlags.Function))
      // Errors share their base class's example; getDefaultPool is one line of prose.
      .filter(({ name, symbol }) => !(name.endsWith('Error') && name !== 'BnPoolError') && name !== 'getDefaultPool'
        && !symbol.getJsDocTags(checker).some((t) => t.name === 'example'))
      .map(({ name }) => name);
    expect(without).toEqual([]);
  });
});

describe("the README's Errors table", () => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const section = readme.slice(readme.indexOf('## Errors'), readme.indexOf('\n## ', readme.indexOf('## Errors') + 1));
  const rows = [...section.matchAll(/^\| `(\w+)` \| `(\w+)` \|/gm)].map((m) => [m[1], m[2]]);

  it('lists every exported error class but the base, with the code its instances carry', () => {
    const exported = Object.entries(bnpool)
      .filter(([name, value]) => typeof value === 'function' && value.prototype instanceof bnpool.BnPoolError)
      .map(([name, ErrorClass]) => [name, new (ErrorClass as new (message: string) => bnpool.BnPoolError)('m').code]);
    expect(exported.length).toBeGreaterThanOrEqual(10);
    expect(rows.sort()).toEqual(exported.sort());
  });
});

describe("the README's Layout", () => {
  const readme = readFileSync(`${root}README.md`, 'utf8');
  const layout = readme.slice(readme.indexOf('## Layout'));
  const named = new Set([...layout.matchAll(/`([^`]+)`/g)].map((m) => m[1]));

  it('names every source file of src/ and workers/ (by its path under src/ or workers/, or its name)', () => {
    const files = (dir: string): string[] => readdirSync(`${root}${dir}`, { withFileTypes: true }).flatMap((e) => (
      e.isDirectory() ? files(`${dir}/${e.name}`) : /\.(ts|cts|mjs)$/.test(e.name) ? [`${dir}/${e.name}`] : []
    ));
    const sources = [...files('src'), ...files('workers')];
    expect(sources.length).toBeGreaterThan(40);
    const unnamed = sources.filter((path) => {
      const inTop = path.replace(/^(src|workers)\//, '');
      return !named.has(inTop) && !named.has(path.slice(path.lastIndexOf('/') + 1));
    });
    expect(unnamed).toEqual([]);
  });
});

// test/mutants.mjs names each mutant by text that must occur once in its file: a change to that
// code must update the mutant, or the mutation check would stop checking that rule.
describe('the mutation check (test/mutants.mjs)', () => {
  it('finds every mutant\'s text once in the source', () => {
    const run = spawnSync(process.execPath, [`${root}test/mutants.mjs`, '--check'], { encoding: 'utf8' });
    expect(run.stdout).toMatch(/^(\d+) of \1 mutants apply$/m);
    expect(run.status).toBe(0);
  });
});
