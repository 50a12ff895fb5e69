import { parseArgs } from 'node:util'

/** One flag: a boolean switch, or an option that takes a value (`--name VALUE` or `--name=VALUE`). */
export interface FlagSpec {
  type: 'boolean' | 'string'
  short?: string
  /** Names what the value is in "needs a file"; "a value" by default. */
  value?: string
}

export type Flags = Readonly<Record<string, string | boolean | undefined>>

export type Scanned = { ok: true; flags: Flags; positionals: string[] } | { ok: false; message: string }

/**
 * Flags through node:util parseArgs in strict mode: an unknown or misspelt
 * flag is a usage error, never silently ignored. `--help`/`-h` is known to
 * every command. parseArgs's own messages carry advice meant for other
 * programs' grammars; ours name the argument and what is wrong with it.
 */
export function scanArgs(args: readonly string[], spec: Readonly<Record<string, FlagSpec>>, positionals = false): Scanned {
  const options: Record<string, { type: 'boolean' | 'string'; short?: string }> = {
    help: { type: 'boolean', short: 'h' },
  }
  for (const [name, f] of Object.entries(spec)) options[name] = f.short ? { type: f.type, short: f.short } : { type: f.type }
  try {
    const { values, positionals: rest } = parseArgs({ args: [...args], options, strict: true, allowPositionals: positionals })
    return { ok: true, flags: values as Flags, positionals: rest }
  } catch (err) {
    return { ok: false, message: usageMessage(err, spec) }
  }
}

function usageMessage(err: unknown, spec: Readonly<Record<string, FlagSpec>>): string {
  const e = err as { code?: unknown; message?: unknown }
  const text = typeof e.message === 'string' ? e.message : String(err)
  // parseArgs names the argument between single quotes: 'config.yaml', '-c, --config <value>'.
  const quoted = /'([^']*)'/.exec(text)?.[1] ?? ''
  switch (e.code) {
    case 'ERR_PARSE_ARGS_UNKNOWN_OPTION':
    case 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL':
      return `unknown argument "${quoted}"`
    case 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE': {
      const long = /--([\w-]+)/.exec(quoted)?.[1]
      if (long !== undefined && spec[long]?.type === 'string') return `--${long} needs ${spec[long].value ?? 'a value'}`
      return `${quoted.replace(/ <value>$/, '')} takes no value`
    }
    default:
      return text
  }
}

const CONFIG_FLAG: Readonly<Record<string, FlagSpec>> = { config: { type: 'string', short: 'c', value: 'a file' } }

/**
 * The config path of `sluice <command> --config FILE`; `'help'` for
 * `--help`; undefined after printing the usage error (exit 2).
 */
export function requireConfigPath(
  args: readonly string[],
  command: string,
  stderr: (text: string) => void = (s) => process.stderr.write(s),
  extra: Readonly<Record<string, FlagSpec>> = {},
): string | undefined {
  const scanned = scanArgs(args, { ...CONFIG_FLAG, ...extra })
  const path = scanned.ok ? scanned.flags['config'] : undefined
  if (typeof path === 'string') return path
  stderr(`${scanned.ok ? '--config FILE is required' : scanned.message}\nusage: sluice ${command} --config FILE\n`)
  return undefined
}

/** Whether the arguments ask for help (`--help`, `-h`), before any other check: help never starts anything. */
export function wantsHelp(args: readonly string[]): boolean {
  return args.includes('--help') || args.includes('-h')
}
