import { wantsHelp } from './args.js'
import { runCtl } from './ctl.js'
import { DEMO_USAGE, runDemo } from './demo.js'
import { runServe } from './serve.js'
import { type CliIo, processIo } from './io.js'
import { runValidate } from './validate.js'

const USAGE = `usage: sluice <command>

  serve --config FILE      run the proxy in the foreground
  validate --config FILE   check a config file; prints ok or every problem
  demo                     demo upstreams and a proxy in front, on loopback
  ctl <verb> ...           admin API client (sluice ctl --help)

Every command answers --help.
`

const SERVE_USAGE = `usage: sluice serve --config FILE [--workers N|auto]

Runs the proxy in the foreground: JSON log lines (pino) on stdout, one with
"msg":"listening" and the bound port and adminPort once both listeners are
up. SIGHUP reloads the config; SIGTERM or SIGINT stop gracefully. --workers
overrides the config's workers; with workers, SIGUSR2 replaces them one at
a time with ones running the code and config on disk.

exit codes: 0 after a graceful stop, 1 invalid config or failed start (one line on stderr), 2 usage error
`

const VALIDATE_USAGE = `usage: sluice validate --config FILE

Prints ok, or every problem of the config file with its key path.

exit codes: 0 valid, 1 invalid, 2 usage error
`

/** Each command's own help, printed on stdout with exit 0 before anything starts. */
const HELP: Readonly<Record<string, string>> = { serve: SERVE_USAGE, validate: VALIDATE_USAGE, demo: DEMO_USAGE }

/** Runs one command line; -1 means it keeps running (serve, demo) until a signal. Tests pass their own `io`. */
export async function runCommand(argv: string[], io: CliIo = processIo): Promise<number> {
  const [cmd, ...rest] = argv
  const help = cmd === undefined ? undefined : HELP[cmd]
  if (help !== undefined && wantsHelp(rest)) {
    io.stdout(help)
    return 0
  }
  switch (cmd) {
    case 'serve':
      return runServe(rest)
    case 'validate':
      return runValidate(rest, io)
    case 'demo':
      return runDemo(rest)
    case 'ctl':
      return runCtl(rest, io)
    case '-h':
    case '--help':
    case 'help':
      if (rest[0] === 'ctl') return runCtl(['help', ...rest.slice(1)], io)
      io.stdout((rest[0] !== undefined ? HELP[rest[0]] : undefined) ?? USAGE)
      return 0
    default:
      io.stderr(cmd === undefined ? USAGE : `unknown command "${cmd}"\n${USAGE}`)
      return 2
  }
}

