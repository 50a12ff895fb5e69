import { readFileSync } from 'node:fs'
import { dirname, join, relative } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'
import { describe, expect, it } from 'vitest'

const SRC = fileURLToPath(new URL('../../../src', import.meta.url))

/**
 * Every module a worker loads at its boot: the static imports from its entry, read with the TypeScript parser (as
 * .ci/check-cycles.mjs reads them), less the type-only ones, which the compiler erases.
 */
function bootGraph(entry: string): { local: Set<string>; packages: Set<string> } {
  const local = new Set<string>()
  const packages = new Set<string>()
  const walk = (file: string) => {
    const rel = relative(SRC, file)
    if (local.has(rel)) return
    local.add(rel)
    const source = ts.createSourceFile(file, readFileSync(file, 'utf8'), ts.ScriptTarget.Latest)
    for (const st of source.statements) {
      const typeOnly = ts.isImportDeclaration(st) ? st.importClause?.isTypeOnly === true : ts.isExportDeclaration(st) && st.isTypeOnly
      const from = (ts.isImportDeclaration(st) || ts.isExportDeclaration(st)) && st.moduleSpecifier
      if (typeOnly || !from || !ts.isStringLiteral(from)) continue
      const spec = from.text
      if (spec.startsWith('.')) walk(join(dirname(file), spec.replace(/\.js$/, '.ts')))
      else if (!spec.startsWith('node:')) packages.add(spec)
    }
  }
  walk(join(SRC, entry))
  return { local, packages }
}

// A worker boots next to workers serving traffic in a rolling restart, and every module it loads is CPU taken
// from them (README "Workers and self-upgrade"). What it must not load again without a reason: the config schema
// (zod), undici's index (all of undici; the data path takes its parts from src/proxy/undici-parts.ts), the prober
// (only the primary probes) and the primary's parts.
describe("a worker's boot", () => {
  const { local, packages } = bootGraph('lifecycle/worker.ts')

  it('loads only the packages that serve traffic', () => {
    expect([...packages].sort()).toEqual(['pino', 'prom-client', 'safe-stable-stringify', 'ws'])
  })

  it('loads neither the config schema, the prober, nor the primary-only parts', () => {
    for (const file of [
      'config/schema.ts',
      'config/load.ts',
      'health/prober.ts',
      'health/probe-connection.ts',
      'admin/server.ts',
      'rollout/driver.ts',
      'discovery/discovery.ts',
      'state/redis-store.ts',
    ])
      expect(local, file).not.toContain(file)
    // The walk itself works: the data path is there.
    expect(local).toContain('proxy/forward.ts')
    expect(local).toContain('proxy/undici-parts.ts')
  })
})
