#!/usr/bin/env node
import cluster from 'node:cluster'
import * as nodeModule from 'node:module'
import { runCommand } from './commands.js'

function main(): void {
  runCommand(process.argv.slice(2)).then(
    (code) => {
      // serve and demo keep running until a signal; the others end here.
      if (code !== -1) process.exitCode = code
    },
    (err: unknown) => {
      process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`)
      process.exitCode = 1
    },
  )
}

// A worker of `serve` with `workers` (README "Workers and self-upgrade") is this file run again by node:cluster.
if (cluster.isWorker) {
  // A worker boots next to workers serving traffic (a rolling restart): where Node has a compile cache (>= 22.1)
  // the modules below load from it. Node 20 has none; the call is skipped there.
  ;(nodeModule as { enableCompileCache?: () => unknown }).enableCompileCache?.()
  const { runWorker } = await import('../lifecycle/worker.js')
  runWorker()
} else {
  main()
}
