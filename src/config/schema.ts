import { BlockList, isIP, isIPv4, isIPv6 } from 'node:net'
import { z } from 'zod'
import { gateKeys } from '../rollout/gates-schema.js'
import { proxyOwnedHeader } from '../proxy/headers.js'
import { weightProblems } from '../state/types.js'

/**
 * One zod schema for the whole configuration file (README, Configuration).
 * Objects are strict: an unknown key is an error, because a typo in an edge
 * proxy's config must never pass silently. Cross-field rules (weights naming
 * declared versions, sums, rollout targets) are checked in `refineConfig`
 * so that every problem is reported in one pass.
 */

export const VERSION_NAME = /^[a-z][a-z0-9_-]{0,31}$/

const port = z.number().int().min(0).max(65535)
const ms = z.number().int().min(0)
const positiveMs = z.number().int().min(1)
const host = z.string().min(1)
const percent = z.number().int().min(0).max(100)
const versionName = z.string().regex(VERSION_NAME, 'must match ^[a-z][a-z0-9_-]{0,31}$')

export const httpUrl = z.string().refine((s) => {
  try {
    const u = new URL(s)
    return (
      (u.protocol === 'http:' || u.protocol === 'https:') &&
      u.hostname !== '' &&
      (u.pathname === '/' || u.pathname === '') &&
      !u.search
    )
  } catch {
    return false
  }
}, 'must be an http:// or https:// URL with host and optional port, and no path or query')

/** How a version's instances are spoken to (README "Upstream TLS and HTTP/2"). */
export const upstreamProtocol = z.enum(['http1', 'h2c', 'h2'])

/** TLS to a version's https:// instances: verified by default, against `ca` (a PEM file) or the system roots. */
const upstreamTls = z.strictObject({
  ca: z.string().min(1).optional(),
  servername: z.string().min(1).optional(),
  verify: z.boolean().default(true),
})

/** gRPC status codes (0..16). */
const grpcCode = z.number().int().min(0).max(16)

/** A TLS server name for SNI: a DNS name, or `*.` and a name (the wildcard covers exactly one label). */
const serverName = z
  .string()
  .regex(
    /^(\*\.)?([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/i,
    'must be a DNS name, or "*." and a DNS name',
  )

/** As node:dns `setServers` takes them: an IP address, "v4:port" or "[v6]:port". */
const dnsServer = z.string().refine((s) => {
  const m = /^\[(.+)\]:(\d{1,5})$/.exec(s) ?? /^([^:]+):(\d{1,5})$/.exec(s)
  if (m) return isIP(m[1]!) !== 0 && Number(m[2]) >= 1 && Number(m[2]) <= 65535
  return isIP(s) !== 0
}, 'must be an IP address, "v4:port" or "[v6]:port"')

/** Where a version's instances come from besides `instances` (README "Discovery"). */
const discoverSchema = z.strictObject({
  /** A and AAAA records: every address is an instance on `port`. */
  dns: host.optional(),
  port: port.min(1).optional(),
  /** SRV records: every address of every target, on the record's port. */
  srv: host.optional(),
  /** At least this often; never under 100 ms, so a typo cannot hammer the DNS server. */
  intervalMs: z.number().int().min(100).default(5000),
  /** Consecutive empty answers before a version that had instances is emptied. */
  emptyAfter: z.number().int().min(1).default(3),
})

export const weightsSchema = z.record(z.string(), percent)

const stickyKey = z
  .string()
  .regex(/^(header|cookie):[A-Za-z0-9!#$%&'*+.^_`|~-]+$/, 'must be "header:NAME" or "cookie:NAME"')

const overrideMatch = z.union([
  z.strictObject({ header: z.string().min(1), value: z.string() }),
  z.strictObject({ cookie: z.string().min(1), value: z.string() }),
])

export const stepSchema = z.strictObject({
  weight: percent,
  holdMs: ms.default(60000),
  /** After its hold the step waits for an operator's approval (README "Rollout gates, windows and notifications"). */
  approval: z.boolean().optional(),
})

export const onBreachSchema = z.enum(['rollback', 'pause'])

export const rolloutMirrorSchema = z.strictObject({
  percent: z.number().int().min(1).max(100).default(10),
  holdMs: ms.default(60000),
  maxMismatchRate: z.number().min(0).max(1).default(0.01),
  maxP95Ratio: z.number().min(1).default(1.5),
  minRequests: z.number().int().min(1).default(50),
})

export const mirrorSchema = z.strictObject({
  version: versionName,
  percent: z.number().int().min(0).max(100).default(10),
  methods: z
    .array(z.string().regex(/^[A-Z]+$/, 'must be an upper-case HTTP method'))
    .min(1)
    .default(['GET', 'HEAD']),
  compare: z.boolean().default(true),
  /** Header names (lower-cased) and JSON pointers ("/a/b") left out of the comparison. */
  ignore: z
    .array(
      z
        .string()
        .regex(
          /^(\/([^~/]|~[01])*)+$|^[A-Za-z0-9!#$%&'*+.^_`|~-]+$/,
          'must be a header name or a JSON pointer ("/a/b", "~0" for "~", "~1" for "/")',
        ),
    )
    .default([]),
  timeoutMs: positiveMs.default(2000),
  maxInflight: z.number().int().min(1).default(64),
  maxBodyBytes: z.number().int().min(0).default(65536),
})

export const configSchema = z
  .strictObject({
    listen: z
      .strictObject({
        host: host.default('0.0.0.0'),
        port: port.default(8080),
        /** README "TLS and HTTP/2": PEM files, re-read on reload and when they change on disk. */
        tls: z
          .strictObject({
            cert: z.string().min(1),
            key: z.string().min(1),
            sni: z.array(z.strictObject({ names: z.array(serverName).min(1), cert: z.string().min(1), key: z.string().min(1) })).default([]),
          })
          .optional(),
        /** With tls: ALPN h2 and http/1.1; without: h2c by prior knowledge, HTTP/1.1 still answered. */
        http2: z.boolean().default(false),
        /** HTTP/2: streams one client connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). */
        maxConcurrentStreams: z.number().int().min(1).max(2 ** 31 - 1).default(100),
      })
      .prefault({}),
    admin: z
      .strictObject({
        host: host.default('127.0.0.1'),
        port: port.default(9901),
        token: z.string().min(1).optional(),
        tokens: z.array(z.strictObject({ name: z.string().min(1), token: z.string().min(1) })).default([]),
      })
      .prefault({}),
    versions: z
      .record(
        z.string(),
        z.strictObject({
          instances: z.array(z.strictObject({ url: httpUrl })).default([]),
          discover: discoverSchema.optional(),
          protocol: upstreamProtocol.default('http1'),
          tls: upstreamTls.optional(),
        }),
      )
      .refine((v) => Object.keys(v).length > 0, 'needs at least one version'),
    weights: weightsSchema.optional(),
    sticky: z.strictObject({ keys: z.array(stickyKey).default([]) }).prefault({}),
    overrides: z.array(z.strictObject({ match: overrideMatch, version: z.string() })).default([]),
    health: z
      .strictObject({
        path: z.string().startsWith('/', 'must start with "/"').default('/healthz'),
        intervalMs: positiveMs.default(2000),
        timeoutMs: positiveMs.default(1000),
        healthyThreshold: z.number().int().min(1).default(2),
        unhealthyThreshold: z.number().int().min(1).default(2),
        /** Ramp of a newly usable instance's share, 0 = off. */
        slowStartMs: ms.default(0),
        /** Probe h2c/h2 versions with grpc.health.v1.Health/Check instead of GET path. */
        grpc: z.boolean().default(false),
      })
      .optional(),
    outlier: z
      .strictObject({
        consecutiveFailures: z.number().int().min(0).default(5),
        ejectionMs: ms.default(30000),
        /** Of a version's instances ejected at once; at least one may be when it has two or more. */
        maxEjectionPercent: z.number().int().min(1).max(100).default(50),
        /** Eject an instance failing clearly more than its version's others (absent: off). */
        peers: z
          .strictObject({
            intervalMs: positiveMs.default(10000),
            minRequests: z.number().int().min(1).default(50),
            abovePeersPercent: z.number().gt(0).max(100).default(20),
          })
          .optional(),
      })
      .prefault({}),
    timeouts: z
      .strictObject({
        connectMs: positiveMs.default(2000),
        upstreamMs: positiveMs.default(30000),
        /** Longest silence inside an upstream response body. */
        bodyIdleMs: positiveMs.default(60000),
        /** How long an idle client keep-alive connection is kept. */
        clientIdleMs: positiveMs.default(60000),
        /** Longest time to receive a whole request body, from the end of its head. */
        requestBodyMs: positiveMs.default(60000),
      })
      .prefault({}),
    limits: z
      .strictObject({
        /** Request head (line and headers); larger gets 431. */
        maxHeaderBytes: z.number().int().min(1024).default(16384),
        /** Upstream response head; larger gets 502. */
        maxResponseHeaderBytes: z.number().int().min(1024).default(16384),
        /** Per instance: its pool's connection cap; requests beyond it wait, within timeouts.upstreamMs. */
        upstreamConnections: z.number().int().min(1).default(512),
        /** Open client connections (0: no cap); over it, a new connection is closed at once. */
        clientConnections: z.number().int().min(0).default(0),
      })
      .prefault({}),
    /**
     * Processes serving the public listener (README "Workers and self-upgrade"): absent, one process
     * does everything; a count or "auto" (os.availableParallelism()) runs a primary and that many workers.
     */
    workers: z
      .custom<number | 'auto'>((v) => v === 'auto' || (Number.isInteger(v) && (v as number) >= 1), {
        error: 'must be "auto" or a count of 1 or more',
      })
      .optional(),
    retries: z.strictObject({ attempts: z.number().int().min(0).max(5).default(1) }).prefault({}),
    drain: z
      .strictObject({
        timeoutMs: ms.default(30000),
        /** On SIGTERM/SIGINT: /readyz 503 and still serving this long before the stop (README "Stopping behind a load balancer"). */
        delayMs: ms.default(0),
      })
      .prefault({}),
    analysis: z
      .strictObject({
        intervalMs: positiveMs.default(1000),
        windowMs: positiveMs.default(60000),
        minRequests: z.number().int().min(1).default(100),
        maxErrorRateIncrease: z.number().min(0).max(1).default(0.02),
        maxP95Ratio: z.number().min(1).default(1.5),
        maxP95IncreaseMs: z.number().min(0).default(100),
        /** Confidence of the one-sided two-proportion test for an error breach. */
        confidence: z.number().gt(0.5).lt(1).default(0.99),
        /** A gRPC answer with one of these grpc-status values is an error, whatever its HTTP status. */
        grpcErrorCodes: z.array(grpcCode).default([2, 4, 12, 13, 14, 15]),
      })
      .prefault({}),
    rollout: z
      .strictObject({
        baseline: z.string(),
        canary: z.string(),
        steps: z.array(stepSchema).min(1, 'needs at least one step'),
        onBreach: onBreachSchema.default('rollback'),
        autoStart: z.boolean().default(false),
        mirror: rolloutMirrorSchema.optional(),
        ...gateKeys,
      })
      .optional(),
    websocket: z
      .strictObject({
        onDrain: z.enum(['handoff', 'close']).default('handoff'),
        mode: z.enum(['relay', 'tunnel']).default('relay'),
        maxPayload: z
          .number()
          .int()
          .min(1)
          .default(64 * 1024 * 1024),
        idleTimeoutMs: ms.default(0),
        handoffTimeoutMs: positiveMs.default(5000),
        /** Bytes waiting to be sent to one side before the other side stops being read. */
        highWaterMark: z
          .number()
          .int()
          .min(1024)
          .default(1024 * 1024),
        /** Offer/accept permessage-deflate, negotiated separately with the client and the upstream (relay mode). */
        perMessageDeflate: z.boolean().default(false),
      })
      .prefault({}),
    mirror: mirrorSchema.optional(),
    redis: z
      .strictObject({
        url: z
          .string()
          .regex(/^rediss?:\/\//, 'must be a redis:// or rediss:// URL')
          .refine((s) => URL.canParse(s), 'must be a valid URL'),
        keyPrefix: z.string().min(1).default('sluice:'),
        /** The rollout driver's leader lease; a dead leader is replaced within two of these. */
        leaseMs: z.number().int().min(100).max(60_000).default(2000),
      })
      .optional(),
    /** The DNS servers discovery asks (README "Discovery"); absent: the system's. */
    resolver: z
      .strictObject({
        servers: z
          .array(dnsServer)
          .min(1)
          .optional(),
        timeoutMs: positiveMs.default(2000),
      })
      .prefault({}),
    /** The embedded store's durable copy (README "State file"); absent: in memory only. */
    state: z.strictObject({ file: z.string().min(1).optional() }).prefault({}),
    /** README "Request IDs": the header that carries a request's ID upstream and back. */
    requestId: z
      .strictObject({
        header: z
          .string()
          .regex(/^[A-Za-z0-9!#$%&'*+.^_`|~-]{1,64}$/, 'must be a header name')
          .transform((h) => h.toLowerCase())
          .refine((h) => !proxyOwnedHeader(h), 'names a header the proxy sets or removes itself')
          .default('x-request-id'),
      })
      .prefault({}),
    log: z
      .strictObject({
        level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info'),
        access: z.boolean().default(false),
      })
      .prefault({}),
  })
  .superRefine(refineConfig)

type Parsed = z.output<typeof configSchema>

const LOOPBACK_V6 = new BlockList()
LOOPBACK_V6.addAddress('::1', 'ipv6')

/**
 * Loopback is an address in 127.0.0.0/8, `::1`, or the name `localhost`; any
 * other name (`127.evil.example` too) may resolve anywhere (README "Admin API").
 */
export function isLoopback(h: string): boolean {
  const a = h.toLowerCase().replace(/^\[(.*)\]$/, '$1')
  if (a === 'localhost') return true
  if (isIPv4(a)) return a.startsWith('127.')
  return isIPv6(a) && LOOPBACK_V6.check(a, 'ipv6')
}

/** Cross-field rules; each problem names its key path. */
function refineConfig(c: Parsed, ctx: z.core.$RefinementCtx<Parsed>): void {
  const declared = new Set(Object.keys(c.versions))
  const problem = (path: (string | number)[], message: string) => ctx.addIssue({ code: 'custom', path, message })
  const known = (path: (string | number)[], name: string) => {
    if (!declared.has(name)) problem(path, `unknown version "${name}"`)
  }

  const sniNames = new Set<string>()
  c.listen.tls?.sni.forEach((entry, i) =>
    entry.names.forEach((name, j) => {
      const lower = name.toLowerCase()
      if (sniNames.has(lower)) problem(['listen', 'tls', 'sni', i, 'names', j], `"${name}" is named twice`)
      sniNames.add(lower)
    }),
  )

  const seenUrls = new Map<string, string>()
  for (const [name, v] of Object.entries(c.versions)) {
    if (!VERSION_NAME.test(name)) problem(['versions', name], 'version name must match ^[a-z][a-z0-9_-]{0,31}$')
    if (v.instances.length === 0 && !v.discover)
      problem(['versions', name, 'instances'], 'needs at least one instance, or discover')
    if (v.discover) {
      const d = v.discover
      const at = ['versions', name, 'discover']
      if ((d.dns === undefined) === (d.srv === undefined)) problem(at, 'needs exactly one of dns or srv')
      if (d.dns !== undefined && d.port === undefined) problem([...at, 'port'], 'required with dns')
      if (d.srv !== undefined && d.port !== undefined) problem([...at, 'port'], 'not allowed with srv (SRV records give the port)')
      if (v.protocol === 'h2') problem(['versions', name, 'protocol'], 'h2 needs https:// instances; discovery finds http:// ones')
      else if (v.tls !== undefined) problem(['versions', name, 'tls'], 'applies to https:// instances; discovery finds http:// ones')
    }
    if (v.tls !== undefined && v.protocol === 'h2c') problem(['versions', name, 'tls'], 'not allowed with protocol h2c')
    v.instances.forEach((inst, i) => {
      const scheme = new URL(inst.url).protocol
      if (v.protocol === 'h2' && scheme !== 'https:')
        problem(['versions', name, 'instances', i, 'url'], 'protocol h2 needs an https:// URL (h2c is HTTP/2 without TLS)')
      if (v.protocol === 'h2c' && scheme !== 'http:')
        problem(['versions', name, 'instances', i, 'url'], 'protocol h2c needs an http:// URL (h2 is HTTP/2 over TLS)')
      const url = normalizeOrigin(inst.url)
      const other = seenUrls.get(url)
      if (other !== undefined)
        problem(['versions', name, 'instances', i, 'url'], `duplicate instance (also in ${other})`)
      else seenUrls.set(url, `versions.${name}`)
    })
  }

  if (c.weights) {
    for (const p of weightProblems(c.weights, (name) => declared.has(name)))
      problem(p.path === '' ? ['weights'] : ['weights', p.path], p.message)
  }
  c.overrides.forEach((o, i) => {
    known(['overrides', i, 'version'], o.version)
  })

  if (!isLoopback(c.admin.host) && c.admin.token === undefined && c.admin.tokens.length === 0) {
    problem(['admin', 'token'], `required when admin.host "${c.admin.host}" is not loopback`)
  }
  const tokenNames = new Set<string>()
  c.admin.tokens.forEach((t, i) => {
    if (tokenNames.has(t.name)) problem(['admin', 'tokens', i, 'name'], `duplicate token name "${t.name}"`)
    tokenNames.add(t.name)
  })

  if (c.health && c.health.timeoutMs > c.health.intervalMs) {
    problem(['health', 'timeoutMs'], `must not exceed health.intervalMs (${c.health.intervalMs})`)
  }
  if (c.analysis.intervalMs > c.analysis.windowMs) {
    problem(['analysis', 'intervalMs'], `must not exceed analysis.windowMs (${c.analysis.windowMs})`)
  }

  if (c.rollout) {
    const r = c.rollout
    known(['rollout', 'baseline'], r.baseline)
    known(['rollout', 'canary'], r.canary)
    if (r.baseline === r.canary) problem(['rollout', 'canary'], 'must differ from rollout.baseline')
    for (const p of stepProblems(r.steps)) problem(['rollout', 'steps', ...p.path], p.message)
  }
  if (c.mirror) known(['mirror', 'version'], c.mirror.version)
}

/** Steps rise strictly and end at 100 (promotion). Shared with the admin API. */
export function stepProblems(steps: readonly { weight: number }[]): { path: (string | number)[]; message: string }[] {
  const out: { path: (string | number)[]; message: string }[] = []
  for (let i = 1; i < steps.length; i++) {
    const prev = steps[i - 1]!.weight
    const cur = steps[i]!.weight
    if (cur <= prev) out.push({ path: [i, 'weight'], message: `must be greater than the previous step's ${prev}` })
  }
  const last = steps[steps.length - 1]
  if (last && last.weight !== 100)
    out.push({ path: [steps.length - 1, 'weight'], message: 'the last step must be 100 (promotion)' })
  return out
}

export function normalizeOrigin(url: string): string {
  return new URL(url).origin
}

export type ConfigInput = z.input<typeof configSchema>
export type ParsedConfig = Parsed
