#!/usr/bin/env node
import { runCtl } from './ctl.js'
import { runDemo } from './demo.js'
import { runServe } from './serve.js'
import { processIo } from './io.js'
import { runValidate } from './validate.js'

const USAGE = `usage: sluice <command>

  serve --config FILE      run the proxy in the foreground
  validate --config FILE   check a config file; prints ok or every problem
  demo                     demo upstreams and a proxy in front, on loopback
  ctl <verb> ...           admin API client (sluice ctl help)
`

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv
  switch (cmd) {
    case 'serve':
      return runServe(rest)
    case 'validate':
      return runValidate(rest)
    case 'demo':
      return runDemo(rest)
    case 'ctl':
      return runCtl(rest, processIo)
    case '-h':
    case '--help':
    case 'help':
      process.stdout.write(USAGE)
      return 0
    default:
      process.stderr.write(cmd === undefined ? USAGE : `unknown command "${cmd}"\n${USAGE}`)
      return 2
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    // serve and demo keep running until a signal; the others end here.
    if (code !== -1) process.exitCode = code
  },
  (err: unknown) => {
    process.stderr.write(`sluice: ${err instanceof Error ? err.message : String(err)}\n`)
    process.exitCode = 1
  },
)
