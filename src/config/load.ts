import { readFileSync } from 'node:fs'
import { readFile } from 'node:fs/promises'
import { extname } from 'node:path'
import { parse as parseYaml } from 'yaml'
import type { z } from 'zod'
import { ConfigError, type Problem } from '../errors.js'
import type { UpstreamTransport } from '../routing/instance.js'
import { configSchema, normalizeOrigin, type ParsedConfig } from './schema.js'

export interface StickyKeySpec {
  readonly kind: 'header' | 'cookie'
  /** Lower-cased for headers, as written for cookies. */
  readonly name: string
}

export interface OverrideSpec {
  readonly kind: 'header' | 'cookie'
  readonly name: string
  readonly value: string
  readonly version: string
}

export interface AdminToken {
  readonly name: string
  readonly token: string
}

/** A version's discovery: exactly one of `dns` (with `port`) or `srv`. */
export type DiscoverSpec = NonNullable<ParsedConfig['versions'][string]['discover']>

type Frozen<T> = T extends (infer U)[]
  ? readonly Frozen<U>[]
  : T extends object
    ? { readonly [K in keyof T]: Frozen<T[K]> }
    : T

/** The validated, normalised, frozen configuration the rest of sluice reads. */
export type Config = Frozen<
  Omit<ParsedConfig, 'versions' | 'weights' | 'sticky' | 'overrides' | 'admin'> & {
    admin: { host: string; port: number; tokens: AdminToken[] }
    /** Declared order is kept: it breaks ties and orders output. */
    versions: { name: string; instances: string[]; discover?: DiscoverSpec; transport: UpstreamTransport }[]
    /** Every declared version, missing ones at 0. */
    weights: Record<string, number>
    sticky: { keys: StickyKeySpec[] }
    overrides: OverrideSpec[]
    /** The file it came from, for reload; undefined for the embedded demo. */
    source: string | undefined
  }
>

/** Reads, substitutes ${ENV}, validates and normalises a config file. Throws ConfigError with every problem. */
export async function loadConfigFile(path: string, env: NodeJS.ProcessEnv = process.env): Promise<Config> {
  let text: string
  try {
    text = await readFile(path, 'utf8')
  } catch (err) {
    throw new ConfigError([{ path: '', message: `cannot read ${path}: ${(err as Error).message}` }])
  }
  return parseConfigText(text, path, env)
}

export function parseConfigText(text: string, path: string, env: NodeJS.ProcessEnv = process.env): Config {
  let raw: unknown
  try {
    raw =
      extname(path).toLowerCase() === '.json'
        ? JSON.parse(text)
        : parseYaml(text.replace(ENV_REF, ENV_PLACEHOLDER), { prettyErrors: true })
  } catch (err) {
    // The first line of yaml's pretty error, without the colon that introduces its code frame.
    const reason = (err as Error).message.split('\n')[0]!.replace(/:$/, '')
    throw new ConfigError([{ path: '', message: `cannot parse ${path}: ${reason}` }])
  }
  if (raw === null || raw === undefined) throw new ConfigError([{ path: '', message: `${path} is empty` }])
  return buildConfig(raw, path, env)
}

export function buildConfig(raw: unknown, source: string | undefined, env: NodeJS.ProcessEnv = process.env): Config {
  const problems: Problem[] = []
  const whole = new Set<string>()
  const substituted = substituteEnv(raw, [], env, problems, whole) ?? {}
  if (problems.length > 0) throw new ConfigError(problems)
  let result = configSchema.safeParse(substituted, { error: requiredMessage })
  if (!result.success && numbersFromEnv(substituted, result.error, whole)) {
    result = configSchema.safeParse(substituted, { error: requiredMessage })
  }
  if (!result.success) throw new ConfigError(zodProblems(result.error))
  const cas = readCaFiles(result.data, problems)
  if (problems.length > 0) throw new ConfigError(problems)
  return deepFreeze(normalize(result.data, source, cas))
}

/** Each version's `tls.ca` file, read now so a missing or unreadable one is a config error, not a failing request. */
function readCaFiles(c: ParsedConfig, problems: Problem[]): Map<string, string> {
  const out = new Map<string, string>()
  for (const [name, v] of Object.entries(c.versions)) {
    const file = v.tls?.ca
    if (file === undefined) continue
    try {
      const pem = readFileSync(file, 'utf8')
      if (!pem.includes('-----BEGIN CERTIFICATE-----')) throw new Error('no PEM certificate in it')
      out.set(name, pem)
    } catch (err) {
      problems.push({ path: `versions.${name}.tls.ca`, message: `cannot read ${file}: ${(err as Error).message}` })
    }
  }
  return out
}

/**
 * `port: ${PORT}` reads as a string once substituted. Where the schema wants
 * a number and the whole value was one reference holding a number, the
 * number is used (as docker compose does); any other string stays a string,
 * so a token of digits is never turned into a number. True when a value
 * changed.
 */
function numbersFromEnv(tree: unknown, error: z.ZodError, whole: ReadonlySet<string>): boolean {
  let changed = false
  for (const issue of error.issues) {
    if (issue.code !== 'invalid_type' || issue.expected !== 'number') continue
    const path = issue.path.map(String)
    if (!whole.has(path.join('.'))) continue
    const parent = path.slice(0, -1).reduce<unknown>((node, key) => (node as Record<string, unknown>)?.[key], tree)
    const key = path.at(-1)!
    const value = (parent as Record<string, unknown> | undefined)?.[key]
    if (typeof value !== 'string' || value.trim() === '' || !Number.isFinite(Number(value))) continue
    ;(parent as Record<string, unknown>)[key] = Number(value)
    changed = true
  }
  return changed
}

/** A missing key reads "required" rather than zod's "expected record, received undefined". */
function requiredMessage(issue: z.core.$ZodRawIssue): string | undefined {
  return issue.code === 'invalid_type' && issue.input === undefined ? 'required' : undefined
}

/** Turns zod issues into key-path problems, one per unknown key so each typo is named. */
export function zodProblems(error: z.ZodError): Problem[] {
  const out: Problem[] = []
  for (const issue of error.issues) {
    const path = issue.path.map(String).join('.')
    if (issue.code === 'unrecognized_keys') {
      for (const key of issue.keys) out.push({ path: path ? `${path}.${key}` : key, message: 'unknown key' })
    } else if (issue.code === 'invalid_union' && issue.path.length > 0) {
      out.push({ path, message: 'does not match any allowed form' })
    } else {
      out.push({ path, message: issue.message })
    }
  }
  return out
}

const ENV_REF = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}/g
/**
 * `${NAME}` is not valid YAML inside a flow map (`{ token: ${T} }`, as in the
 * README's examples), so before parsing YAML each reference becomes a plain
 * scalar; substitution then happens on the parsed strings, where a missing
 * variable can still be reported with its key path.
 */
const ENV_PLACEHOLDER = '__sluice_env_$1__'
const ENV_ANY = /\$\{([A-Za-z_][A-Za-z0-9_]*)\}|__sluice_env_([A-Za-z_][A-Za-z0-9_]*)__/g
const ENV_WHOLE = /^(?:\$\{[A-Za-z_][A-Za-z0-9_]*\}|__sluice_env_[A-Za-z_][A-Za-z0-9_]*__)$/

/** Substitutes every reference; the key paths of values that were one whole reference go to `whole`. */
function substituteEnv(
  value: unknown,
  path: string[],
  env: NodeJS.ProcessEnv,
  problems: Problem[],
  whole: Set<string>,
): unknown {
  if (typeof value === 'string') {
    if (ENV_WHOLE.test(value)) whole.add(path.join('.'))
    return value.replace(ENV_ANY, (_m, braced: string | undefined, placed: string | undefined) => {
      const name = (braced ?? placed)!
      const v = env[name]
      if (v === undefined) {
        problems.push({ path: path.join('.'), message: `environment variable ${name} is not set` })
        return ''
      }
      return v
    })
  }
  if (Array.isArray(value)) return value.map((v, i) => substituteEnv(v, [...path, String(i)], env, problems, whole))
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {}
    for (const [k, v] of Object.entries(value)) out[k] = substituteEnv(v, [...path, k], env, problems, whole)
    return out
  }
  return value
}

function normalize(c: ParsedConfig, source: string | undefined, cas: ReadonlyMap<string, string>) {
  const versions = Object.entries(c.versions).map(([name, v]) => ({
    name,
    instances: v.instances.map((i) => normalizeOrigin(i.url)),
    ...(v.discover ? { discover: v.discover } : {}),
    transport: {
      protocol: v.protocol,
      ca: cas.get(name),
      servername: v.tls?.servername,
      verify: v.tls?.verify ?? true,
    },
  }))
  const weights: Record<string, number> = {}
  for (const v of versions) weights[v.name] = 0
  if (c.weights) Object.assign(weights, c.weights)
  else weights[versions[0]!.name] = 100
  const tokens = [...c.admin.tokens]
  if (c.admin.token !== undefined) tokens.unshift({ name: 'admin', token: c.admin.token })
  return {
    ...c,
    admin: { host: c.admin.host, port: c.admin.port, tokens },
    versions,
    weights,
    sticky: {
      keys: c.sticky.keys.map((k) => {
        const i = k.indexOf(':')
        const kind = k.slice(0, i) as 'header' | 'cookie'
        const name = k.slice(i + 1)
        return { kind, name: kind === 'header' ? name.toLowerCase() : name }
      }),
    },
    overrides: c.overrides.map((o) =>
      'header' in o.match
        ? { kind: 'header' as const, name: o.match.header.toLowerCase(), value: o.match.value, version: o.version }
        : { kind: 'cookie' as const, name: o.match.cookie, value: o.match.value, version: o.version },
    ),
    source,
  }
}

function deepFreeze<T>(o: T): T {
  if (o !== null && typeof o === 'object' && !Object.isFrozen(o)) {
    Object.freeze(o)
    for (const v of Object.values(o)) deepFreeze(v)
  }
  return o
}
