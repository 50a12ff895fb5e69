#!/usr/bin/env node
// Fails when the import graph of src/ has a cycle. Type-only imports count
// too: a cycle of types is still two modules that cannot be read (or split
// into processes) one without the other. Uses the TypeScript scanner the
// typecheck already installs; no further dependency.
import { readdirSync, readFileSync } from 'node:fs'
import { dirname, join, relative, resolve } from 'node:path'
import { fileURLToPath } from 'node:url'
import ts from 'typescript'

const root = resolve(dirname(fileURLToPath(import.meta.url)), '..')
const src = join(root, 'src')

function files(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = join(dir, e.name)
    if (e.isDirectory()) return files(p)
    return /\.(ts|mts)$/.test(e.name) && !e.name.endsWith('.d.ts') ? [p] : []
  })
}

const graph = new Map()
for (const file of files(src)) {
  const { importedFiles } = ts.preProcessFile(readFileSync(file, 'utf8'), true, true)
  const deps = new Set()
  for (const { fileName } of importedFiles) {
    if (!fileName.startsWith('.')) continue
    deps.add(resolve(dirname(file), fileName).replace(/\.js$/, '.ts'))
  }
  graph.set(file, [...deps].filter((d) => d !== file))
}

// Tarjan's strongly connected components: every component of more than one module is a cycle.
let index = 0
const stack = []
const seen = new Map()
const cycles = []
function visit(v) {
  const node = { index, low: index, onStack: true }
  index++
  seen.set(v, node)
  stack.push(v)
  for (const w of graph.get(v) ?? []) {
    if (!graph.has(w)) continue
    const n = seen.get(w)
    if (n === undefined) {
      visit(w)
      node.low = Math.min(node.low, seen.get(w).low)
    } else if (n.onStack) node.low = Math.min(node.low, n.index)
  }
  if (node.low !== node.index) return
  const component = []
  for (;;) {
    const w = stack.pop()
    seen.get(w).onStack = false
    component.push(w)
    if (w === v) break
  }
  if (component.length > 1) cycles.push(component)
}
for (const v of graph.keys()) if (!seen.has(v)) visit(v)

if (cycles.length === 0) {
  console.log(`no import cycles in src/ (${graph.size} modules)`)
} else {
  for (const c of cycles) console.error(`import cycle: ${c.map((f) => relative(root, f)).sort().join(', ')}`)
  process.exit(1)
}
