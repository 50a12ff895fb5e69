import { describe, expect, it } from 'vitest'
import { buildConfig, parseConfigText } from '../../../src/config/load.js'
import { ConfigError, formatProblem } from '../../../src/errors.js'

const BLUE = { instances: [{ url: 'http://127.0.0.1:3001' }] }
const GREEN = { instances: [{ url: 'http://127.0.0.1:3002' }] }

/** Every problem line ("path: message") a config raises, or [] when it is valid. */
function problems(raw: unknown, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    buildConfig(raw, 'test.yaml', env)
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map(formatProblem)
  }
}

function textProblems(text: string, path: string, env: NodeJS.ProcessEnv = {}): string[] {
  try {
    parseConfigText(text, path, env)
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map(formatProblem)
  }
}

describe('loading a valid config', () => {
  it('fills defaults and normalises versions, weights, sticky keys, overrides and tokens', () => {
    const c = buildConfig(
      {
        admin: { token: 't0', tokens: [{ name: 'alice', token: 't1' }] },
        versions: { blue: { instances: [{ url: 'http://127.0.0.1:3001/' }] }, green: GREEN },
        weights: { blue: 100 },
        sticky: { keys: ['header:X-User-Id', 'cookie:Session'] },
        overrides: [
          { match: { header: 'X-Canary', value: 'true' }, version: 'green' },
          { match: { cookie: 'Lane', value: 'g' }, version: 'green' },
        ],
      },
      'a.yaml',
      {},
    )
    const transport = { protocol: 'http1', ca: undefined, servername: undefined, verify: true }
    expect(c.versions).toEqual([
      { name: 'blue', instances: ['http://127.0.0.1:3001'], transport },
      { name: 'green', instances: ['http://127.0.0.1:3002'], transport },
    ])
    expect(c.weights).toEqual({ blue: 100, green: 0 })
    expect(c.sticky.keys).toEqual([
      { kind: 'header', name: 'x-user-id' },
      { kind: 'cookie', name: 'Session' },
    ])
    expect(c.overrides).toEqual([
      { kind: 'header', name: 'x-canary', value: 'true', version: 'green' },
      { kind: 'cookie', name: 'Lane', value: 'g', version: 'green' },
    ])
    expect(c.admin).toEqual({
      host: '127.0.0.1',
      port: 9901,
      tokens: [
        { name: 'admin', token: 't0' },
        { name: 'alice', token: 't1' },
      ],
    })
    expect(c.listen).toEqual({ host: '0.0.0.0', port: 8080, http2: false, maxConcurrentStreams: 100 })
    expect(c.timeouts).toMatchObject({ connectMs: 2000, upstreamMs: 30000, bodyIdleMs: 60000, clientIdleMs: 60000 })
    expect(c.retries).toEqual({ attempts: 1 })
    expect(c.drain).toEqual({ timeoutMs: 30000, delayMs: 0 })
    expect(c.health).toBeUndefined()
    expect(c.redis).toBeUndefined()
    expect(c.source).toBe('a.yaml')
  })

  it('gives the first declared version 100 when weights are absent', () => {
    const c = buildConfig({ versions: { green: GREEN, blue: BLUE } }, undefined, {})
    expect(c.weights).toEqual({ green: 100, blue: 0 })
  })

  it('is frozen all the way down', () => {
    const c = buildConfig({ versions: { blue: BLUE } }, undefined, {})
    expect(Object.isFrozen(c)).toBe(true)
    expect(Object.isFrozen(c.versions[0]!.instances)).toBe(true)
    expect(Object.isFrozen(c.weights)).toBe(true)
  })

  it('replaces ${NAME} anywhere in a string with the environment variable', () => {
    const c = parseConfigText(
      [
        'admin:',
        '  token: ${TOKEN}',
        'versions:',
        '  blue:',
        '    instances:',
        '      - url: http://${HOST}:${PORT}',
        'redis:',
        '  url: redis://${HOST}:6379/0',
        '  keyPrefix: "${PREFIX}:"',
      ].join('\n'),
      'env.yaml',
      { TOKEN: 's3cret', HOST: '127.0.0.9', PORT: '4000', PREFIX: 'shop' },
    )
    expect(c.admin.tokens).toEqual([{ name: 'admin', token: 's3cret' }])
    expect(c.versions[0]!.instances).toEqual(['http://127.0.0.9:4000'])
    expect(c.redis).toMatchObject({ url: 'redis://127.0.0.9:6379/0', keyPrefix: 'shop:' })
  })

  it('a whole ${NAME} gives a number where a number is wanted, and stays a string elsewhere', () => {
    const c = parseConfigText(
      [
        'listen: { host: 127.0.0.1, port: ${PORT} }',
        'admin:',
        '  port: ${ADMIN_PORT}',
        '  token: ${TOKEN}',
        'versions:',
        '  blue:',
        '    instances:',
        '      - url: http://127.0.0.1:${PORT}',
        'timeouts:',
        '  upstreamMs: ${UPSTREAM_MS}',
      ].join('\n'),
      'env.yaml',
      { PORT: '8088', ADMIN_PORT: '9909', TOKEN: '12345', UPSTREAM_MS: '2500' },
    )
    expect(c.listen.port).toBe(8088)
    expect(c.admin.port).toBe(9909)
    expect(c.timeouts.upstreamMs).toBe(2500)
    // Digits in a string field stay a string.
    expect(c.admin.tokens).toEqual([{ name: 'admin', token: '12345' }])
    expect(c.versions[0]!.instances).toEqual(['http://127.0.0.1:8088'])
    // Not a number: the usual error, naming the key.
    expect(() => parseConfigText('listen: { port: ${PORT} }\nversions: { blue: { instances: [{ url: "http://a:1" }] } }', 'e.yaml', { PORT: 'eighty' })).toThrow(/listen\.port/)
  })

  it('reads JSON by its extension', () => {
    const c = parseConfigText(JSON.stringify({ versions: { blue: BLUE } }), 'c.json', {})
    expect(c.versions[0]!.name).toBe('blue')
  })

  it('accepts IPv6 and named hosts with any port', () => {
    expect(
      problems({
        versions: { blue: { instances: [{ url: 'http://[::1]:3000' }, { url: 'http://app.internal' }] } },
      }),
    ).toEqual([])
  })
})

describe('config problems name their key path', () => {
  it.each([
    ['an unknown key', { versions: { blue: BLUE }, listen: { prot: 1 } }, ['listen.prot: unknown key']],
    ['an unknown top-level key', { versions: { blue: BLUE }, weigths: {} }, ['weigths: unknown key']],
    [
      'an SNI name that is not a DNS name or one leading wildcard',
      { versions: { blue: BLUE }, listen: { tls: { cert: 'c', key: 'k', sni: [{ names: ['a.*.example.org'], cert: 'c', key: 'k' }] } } },
      ['listen.tls.sni.0.names.0: must be a DNS name, or "*." and a DNS name'],
    ],
    [
      'an SNI name listed twice',
      {
        versions: { blue: BLUE },
        listen: { tls: { cert: 'c', key: 'k', sni: [{ names: ['*.example.org'], cert: 'c', key: 'k' }, { names: ['*.Example.org'], cert: 'd', key: 'e' }] } },
      },
      ['listen.tls.sni.1.names.0: "*.Example.org" is named twice'],
    ],
    [
      'weights not summing to 100',
      { versions: { blue: BLUE, green: GREEN }, weights: { blue: 90, green: 20 } },
      ['weights: weights must sum to 100, not 110'],
    ],
    [
      'an unknown version in weights',
      { versions: { blue: BLUE }, weights: { blue: 100, green: 0 } },
      ['weights.green: unknown version "green"'],
    ],
    [
      'a fractional weight',
      { versions: { blue: BLUE, green: GREEN }, weights: { blue: 89.5, green: 10.5 } },
      [
        'weights.blue: Invalid input: expected int, received number',
        'weights.green: Invalid input: expected int, received number',
      ],
    ],
    [
      'a bad version name',
      { versions: { Blue: BLUE } },
      ['versions.Blue: version name must match ^[a-z][a-z0-9_-]{0,31}$'],
    ],
    [
      'a non-http URL',
      { versions: { blue: { instances: [{ url: 'ftp://127.0.0.1:3001' }] } } },
      ['versions.blue.instances.0.url: must be an http:// or https:// URL with host and optional port, and no path or query'],
    ],
    [
      'a URL with a path',
      { versions: { blue: { instances: [{ url: 'http://127.0.0.1:3001/api' }] } } },
      ['versions.blue.instances.0.url: must be an http:// or https:// URL with host and optional port, and no path or query'],
    ],
    [
      'h2 with an http:// URL, h2c with an https:// one',
      {
        versions: {
          blue: { instances: [{ url: 'http://127.0.0.1:3001' }], protocol: 'h2' },
          green: { instances: [{ url: 'https://127.0.0.1:3002' }], protocol: 'h2c' },
        },
      },
      [
        'versions.blue.instances.0.url: protocol h2 needs an https:// URL (h2c is HTTP/2 without TLS)',
        'versions.green.instances.0.url: protocol h2c needs an http:// URL (h2 is HTTP/2 over TLS)',
      ],
    ],
    [
      'an unknown protocol, tls with h2c, a gRPC code out of range',
      {
        versions: { blue: { instances: [{ url: 'http://127.0.0.1:3001' }], protocol: 'h2c', tls: { verify: false } } },
        analysis: { grpcErrorCodes: [13, 17] },
      },
      ['analysis.grpcErrorCodes.1: Too big: expected number to be <=16', 'versions.blue.tls: not allowed with protocol h2c'],
    ],
    [
      'a tls.ca file that cannot be read',
      { versions: { blue: { instances: [{ url: 'https://127.0.0.1:3001' }], tls: { ca: '/nonexistent/ca.pem' } } } },
      ["versions.blue.tls.ca: cannot read /nonexistent/ca.pem: ENOENT: no such file or directory, open '/nonexistent/ca.pem'"],
    ],
    [
      'a version without instances',
      { versions: { blue: { instances: [] } } },
      ['versions.blue.instances: needs at least one instance, or discover'],
    ],
    ['no versions', { versions: {} }, ['versions: needs at least one version']],
    ['a missing versions key', { listen: { port: 1 } }, ['versions: required']],
    [
      'a non-loopback admin without token',
      { versions: { blue: BLUE }, admin: { host: '0.0.0.0' } },
      ['admin.token: required when admin.host "0.0.0.0" is not loopback'],
    ],
    [
      'a bad sticky key',
      { versions: { blue: BLUE }, sticky: { keys: ['query:user'] } },
      ['sticky.keys.0: must be "header:NAME" or "cookie:NAME"'],
    ],
    [
      'an override to an unknown version',
      { versions: { blue: BLUE }, overrides: [{ match: { header: 'x-canary', value: '1' }, version: 'green' }] },
      ['overrides.0.version: unknown version "green"'],
    ],
    [
      'an override matching both header and cookie',
      { versions: { blue: BLUE }, overrides: [{ match: { header: 'a', cookie: 'b', value: '1' }, version: 'blue' }] },
      ['overrides.0.match: does not match any allowed form'],
    ],
    [
      'a rollout whose last step is not 100',
      {
        versions: { blue: BLUE, green: GREEN },
        rollout: { baseline: 'blue', canary: 'green', steps: [{ weight: 5 }, { weight: 50 }] },
      },
      ['rollout.steps.1.weight: the last step must be 100 (promotion)'],
    ],
    [
      'rollout steps that do not rise',
      {
        versions: { blue: BLUE, green: GREEN },
        rollout: { baseline: 'blue', canary: 'green', steps: [{ weight: 50 }, { weight: 20 }, { weight: 100 }] },
      },
      ["rollout.steps.1.weight: must be greater than the previous step's 50"],
    ],
    [
      'a rollout onto its own baseline',
      { versions: { blue: BLUE }, rollout: { baseline: 'blue', canary: 'blue', steps: [{ weight: 100 }] } },
      ['rollout.canary: must differ from rollout.baseline'],
    ],
    [
      'a duplicate instance',
      { versions: { blue: BLUE, green: { instances: [{ url: 'http://127.0.0.1:3001/' }] } } },
      ['versions.green.instances.0.url: duplicate instance (also in versions.blue)'],
    ],
    [
      'a probe timeout longer than its interval',
      { versions: { blue: BLUE }, health: { intervalMs: 500, timeoutMs: 1000 } },
      ['health.timeoutMs: must not exceed health.intervalMs (500)'],
    ],
    [
      'a non-redis URL for redis',
      { versions: { blue: BLUE }, redis: { url: 'http://127.0.0.1:6379' } },
      ['redis.url: must be a redis:// or rediss:// URL'],
    ],
  ])('%s', (_what, raw, expected) => {
    expect(problems(raw)).toEqual(expected)
  })

  it('reports every problem at once', () => {
    expect(
      problems({
        listen: { port: 99999 },
        versions: { blue: BLUE },
        weights: { blue: 50, green: 50 },
        retries: { atempts: 2 },
      }),
    ).toEqual([
      'listen.port: Too big: expected number to be <=65535',
      'retries.atempts: unknown key',
      'weights.green: unknown version "green"',
    ])
  })

  it('names every unset environment variable with the key that uses it', () => {
    expect(
      problems(
        { admin: { token: '${A_TOKEN}' }, versions: { blue: { instances: [{ url: 'http://${UP_HOST}:1' }] } } },
        { UP_HOST: undefined },
      ),
    ).toEqual([
      'admin.token: environment variable A_TOKEN is not set',
      'versions.blue.instances.0.url: environment variable UP_HOST is not set',
    ])
  })

  it('an empty file, or one holding only comments, is a problem', () => {
    expect(textProblems('', 'empty.yaml')).toEqual(['empty.yaml is empty'])
    expect(textProblems('# nothing\n', 'c.yaml')).toEqual(['c.yaml is empty'])
  })

  it('YAML and JSON syntax errors give one line with the position', () => {
    expect(textProblems('weights: { blue: 100\n', 'bad.yaml')).toEqual([
      'cannot parse bad.yaml: Flow map in block collection must be sufficiently indented and end with a } at line 2, column 1',
    ])
    // V8's own message; Node 22 and later add "(line 1 column 19)" after the position.
    const [json] = textProblems('{ "versions": {}, }', 'bad.json')
    expect(json).toMatch(/^cannot parse bad\.json: Expected double-quoted property name in JSON at position 18( \(line 1 column 19\))?$/)
  })

  it('a single problem also sets the error path', () => {
    try {
      buildConfig({ versions: { blue: BLUE }, weights: { blue: 100, green: 0 } }, undefined, {})
      expect.unreachable()
    } catch (err) {
      expect((err as ConfigError).path).toBe('weights.green')
      expect((err as ConfigError).code).toBe('SLUICE_CONFIG_INVALID')
    }
  })
})

describe('${NAME} inside YAML flow collections', () => {
  const text = [
    'admin:',
    '  host: 127.0.0.1',
    '  tokens:',
    '    - { name: alice, token: ${ALICE_TOKEN} }',
    'versions:',
    '  blue: { instances: [ { url: "http://${UPSTREAM_HOST}:3000" } ] }',
  ].join('\n')

  it('substitutes as it does in block style (the contract example writes it this way)', () => {
    const c = parseConfigText(text, 'sluice.yaml', { ALICE_TOKEN: 'a__b', UPSTREAM_HOST: '10.0.0.11' })
    expect(c.admin.tokens).toEqual([{ name: 'alice', token: 'a__b' }])
    expect(c.versions[0]!.instances).toEqual(['http://10.0.0.11:3000'])
  })

  it('names the key path of an unset variable', () => {
    expect(() => parseConfigText(text, 'sluice.yaml', { UPSTREAM_HOST: 'h' })).toThrow(
      'admin.tokens.0.token: environment variable ALICE_TOKEN is not set',
    )
  })
})
