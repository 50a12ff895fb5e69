import { loadConfigFile } from '../config/load.js'
import { ConfigError, formatProblem } from '../errors.js'
import { requireConfigPath } from './args.js'
import { type CliIo, processIo } from './io.js'

/** `sluice validate --config FILE`: ok, or every problem with its key path; exit 0, 1, or 2 for usage. */
export async function runValidate(args: string[], io: CliIo = processIo): Promise<number> {
  const path = requireConfigPath(args, 'validate', io.stderr)
  if (path === undefined) return 2
  try {
    await loadConfigFile(path, io.env)
    io.stdout('ok\n')
    return 0
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    for (const p of err.problems) io.stdout(`config error: ${formatProblem(p)}\n`)
    return 1
  }
}

/** The one line `serve` prints for an invalid config: the first problem, and how many more `validate` shows. */
export function configErrorLine(err: ConfigError): string {
  const first = err.problems[0]
  const more = err.problems.length > 1 ? ` (and ${err.problems.length - 1} more: run sluice validate)` : ''
  return `config error: ${first ? formatProblem(first) : err.message}${more}\n`
}
