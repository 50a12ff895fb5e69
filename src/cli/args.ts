/** `--config FILE` (or `--config=FILE`, `-c FILE`) from a command's arguments; undefined when absent. */
export function configPath(args: readonly string[]): string | undefined | Error {
  let path: string | undefined
  for (let i = 0; i < args.length; i++) {
    const a = args[i]!
    if (a === '--config' || a === '-c') {
      path = args[++i]
      if (path === undefined) return new Error(`${a} needs a file`)
    } else if (a.startsWith('--config=')) {
      path = a.slice('--config='.length)
    } else {
      return new Error(`unknown argument "${a}"`)
    }
  }
  return path
}

/** The config path of `sluice <command> --config FILE`, or undefined after printing the usage error (exit 2). */
export function requireConfigPath(
  args: readonly string[],
  command: string,
  stderr: (text: string) => void = (s) => process.stderr.write(s),
): string | undefined {
  const path = configPath(args)
  if (typeof path === 'string') return path
  stderr(
    `${path instanceof Error ? path.message : '--config FILE is required'}\nusage: sluice ${command} --config FILE\n`,
  )
  return undefined
}
