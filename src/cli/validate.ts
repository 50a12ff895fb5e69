import { loadConfigFile } from '../config/load.js'
import { ConfigError, formatProblem } from '../errors.js'
import { requireConfigPath } from './args.js'

/** `sluice validate --config FILE`: ok, or every problem with its key path; exit 0, 1, or 2 for usage. */
export async function runValidate(args: string[]): Promise<number> {
  const path = requireConfigPath(args, 'validate')
  if (path === undefined) return 2
  try {
    await loadConfigFile(path)
    process.stdout.write('ok\n')
    return 0
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    for (const p of err.problems) process.stdout.write(`config error: ${formatProblem(p)}\n`)
    return 1
  }
}
