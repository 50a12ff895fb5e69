import { wantsHelp } from './args.js'
import { type CliIo, processIo } from './io.js'
import { DEMO_USAGE, SERVE_USAGE, USAGE, VALIDATE_USAGE } from './usage.js'

// Each command is imported when it runs: `sluice ctl`, `validate` and `--help` need not load the whole proxy (about 0.6 s of CPU per start).

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
      return (await import('./serve.js')).runServe(rest)
    case 'validate':
      return (await import('./validate.js')).runValidate(rest, io)
    case 'demo':
      return (await import('./demo.js')).runDemo(rest)
    case 'ctl':
      return (await import('./ctl.js')).runCtl(rest, io)
    case '-h':
    case '--help':
    case 'help':
      if (rest[0] === 'ctl') return (await import('./ctl.js')).runCtl(['help', ...rest.slice(1)], io)
      io.stdout((rest[0] !== undefined ? HELP[rest[0]] : undefined) ?? USAGE)
      return 0
    default:
      io.stderr(cmd === undefined ? USAGE : `unknown command "${cmd}"\n${USAGE}`)
      return 2
  }
}

