#!/usr/bin/env node
import cluster from 'node:cluster'
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
  const { runWorker } = await import('../lifecycle/worker.js')
  runWorker()
} else {
  main()
}
