/** `--config FILE` (or `--config=FILE`, `-c FILE`) from a command's arguments; undefined when absent. */
export function configPath(args: readonly string[]): string | undefined | Error {
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--config' || a === '-c') {
      const v = args[i + 1]
      return v === undefined ? new Error(`${a} needs a file`) : v
    }
    if (a.startsWith('--config=')) return a.slice('--config='.length)
    return new Error(`unknown argument "${a}"`)
  }
  return undefined
}
