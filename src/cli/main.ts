#!/usr/bin/env node
import { runCommand } from './commands.js'

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
