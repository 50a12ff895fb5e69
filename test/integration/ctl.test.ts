import { createServer, type IncomingHttpHeaders, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { pino } from 'pino'
import { afterAll, beforeAll, beforeEach, describe, expect, test } from 'vitest'
import { runCtl } from '../../src/cli/ctl.js'
import { buildConfig } from '../../src/config/load.js'
import { type Running, runSluice } from '../../src/lifecycle/run.js'

/**
 * `sluice ctl` against a real HTTP server that answers like the README's Admin
 * API: what the command sends, what it prints and the exit code a
 * script sees; then the same commands against the real proxy's admin API.
 */

const TOKEN = 'test-token'

const STATE = {
  weights: { blue: 90, green: 10 },
  versions: {
    blue: { instances: [{ url: 'http://127.0.0.1:3001', healthy: true, draining: false, inflight: 3, websockets: 1 }] },
    green: {
      instances: [{ url: 'http://127.0.0.1:3002', healthy: true, draining: false, inflight: 0, websockets: 0 }],
    },
  },
  rollout: { status: 'progressing', baseline: 'blue', canary: 'green', step: 1, reason: null },
  analysis: {
    blue: { requests: 5120, errors: 3, errorRate: 0.0006, p95Ms: 12.5 },
    green: { requests: 512, errors: 0, errorRate: 0, p95Ms: 14 },
  },
  mirror: null,
  store: { kind: 'memory', up: true },
  somethingNew: { ignored: true },
}

interface Seen {
  method: string
  url: string
  headers: IncomingHttpHeaders
  body: string
}

type Answer = [status: number, body: unknown]

let server: Server
let base: string
let seen: Seen[]
/** Per-test answers by "METHOD /path"; the defaults below otherwise. */
let answers: Map<string, Answer>

function err(code: string, message: string, path?: string): unknown {
  return { error: path === undefined ? { code, message } : { code, message, path } }
}

function defaultAnswer(method: string, url: string, body: string): Answer {
  const key = `${method} ${url}`
  if (key === 'GET /v1/state') return [200, STATE]
  if (key === 'PUT /v1/weights') {
    const w = JSON.parse(body) as Record<string, number>
    const sum = Object.values(w).reduce((a, b) => a + b, 0)
    if (sum !== 100) return [400, err('SLUICE_INVALID_WEIGHTS', `weights sum to ${sum}, not 100`, 'weights')]
    return [200, { ...STATE, weights: w }]
  }
  if (key === 'POST /v1/drain' || key === 'POST /v1/undrain') {
    const t = JSON.parse(body) as { version?: string; url?: string }
    if (t.version === 'purple') return [404, err('SLUICE_UNKNOWN_TARGET', 'unknown version "purple"', 'version')]
    return [200, STATE]
  }
  if (key === 'POST /v1/rollout') return [201, { ...STATE.rollout, step: 0, ...JSON.parse(body) }]
  if (key === 'GET /v1/audit') {
    return [
      200,
      [
        {
          at: 1714564800000,
          action: 'weights',
          source: 'admin',
          actor: 'alice',
          before: { blue: 100 },
          after: { blue: 90, green: 10 },
          reason: null,
        },
      ],
    ]
  }
  if (key === 'PUT /v1/mirror') return [200, { ...STATE, mirror: JSON.parse(body) }]
  return [404, err('SLUICE_NOT_FOUND', `no route ${key}`)]
}

beforeAll(async () => {
  server = createServer((req, res) => {
    let body = ''
    req.setEncoding('utf8')
    req.on('data', (c: string) => (body += c))
    req.on('end', () => {
      seen.push({ method: req.method!, url: req.url!, headers: req.headers, body })
      let answer: Answer
      if (req.headers.authorization !== `Bearer ${TOKEN}`)
        answer = [401, err('SLUICE_UNAUTHORIZED', 'missing or wrong bearer token')]
      else answer = answers.get(`${req.method} ${req.url}`) ?? defaultAnswer(req.method!, req.url!, body)
      res.writeHead(answer[0], { 'content-type': 'application/json' })
      res.end(JSON.stringify(answer[1]))
    })
  })
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve))
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`
})

afterAll(async () => {
  await new Promise<void>((resolve) => server.close(() => resolve()))
})

beforeEach(() => {
  seen = []
  answers = new Map()
})

async function ctl(argv: string[], env: NodeJS.ProcessEnv = { SLUICE_ADMIN_URL: base, SLUICE_ADMIN_TOKEN: TOKEN }) {
  let stdout = ''
  let stderr = ''
  const code = await runCtl(argv, { env, stdout: (s) => void (stdout += s), stderr: (s) => void (stderr += s) })
  return { code, stdout, stderr }
}

describe('sluice ctl against the admin API', () => {
  test('state prints versions, instances, rollout and analysis, sending the bearer token', async () => {
    const r = await ctl(['state'])
    expect(r).toMatchObject({ code: 0, stderr: '' })
    expect(seen).toHaveLength(1)
    expect(seen[0]).toMatchObject({ method: 'GET', url: '/v1/state' })
    expect(seen[0]!.headers.authorization).toBe(`Bearer ${TOKEN}`)
    expect(r.stdout).toContain('  blue         90  ##################..          1       1\n')
    expect(r.stdout).toMatch(/ {2}blue {5}http:\/\/127\.0\.0\.1:3001 {2}yes {6}no {15}3 {11}1\n/)
    expect(r.stdout).toContain('  status  progressing\n')
    expect(r.stdout).toContain('  blue         5120       3       0.06%  12.5 ms\n')
    expect(r.stdout).toContain('store  memory (up)\n')
    expect(r.stdout).not.toContain('somethingNew')
    expect(r.stdout).not.toContain('mirror')
  })

  test('state --json prints the API answer as JSON', async () => {
    const r = await ctl(['state', '--json'])
    expect(r.code).toBe(0)
    expect(JSON.parse(r.stdout)).toEqual(STATE)
  })

  test('weights sends the weights object and prints the applied weights', async () => {
    const r = await ctl(['weights', 'blue=75', 'green=25'])
    expect(r).toEqual({ code: 0, stdout: 'weights  blue=75 green=25\n', stderr: '' })
    expect(seen[0]).toMatchObject({ method: 'PUT', url: '/v1/weights' })
    expect(seen[0]!.headers['content-type']).toBe('application/json')
    expect(JSON.parse(seen[0]!.body)).toEqual({ blue: 75, green: 25 })
  })

  test('weights the API refuses exit 1 with the error code, message and path', async () => {
    const r = await ctl(['weights', 'blue=75', 'green=20'])
    expect(r).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: SLUICE_INVALID_WEIGHTS: weights sum to 95, not 100 (weights)\n',
    })
  })

  test('weights blue=abc is a usage error and reaches no API', async () => {
    const r = await ctl(['weights', 'blue=abc'])
    expect(r.code).toBe(2)
    expect(r.stderr).toContain('usage: sluice ctl')
    expect(seen).toHaveLength(0)
  })

  test('drain sends a version, or a url for an argument starting with http://', async () => {
    expect((await ctl(['drain', 'blue'])).code).toBe(0)
    expect((await ctl(['undrain', 'http://127.0.0.1:3001'])).code).toBe(0)
    expect(seen.map((s) => [s.method, s.url, JSON.parse(s.body)])).toEqual([
      ['POST', '/v1/drain', { version: 'blue' }],
      ['POST', '/v1/undrain', { url: 'http://127.0.0.1:3001' }],
    ])
  })

  test('draining an unknown version exits 1 with the 404 error', async () => {
    const r = await ctl(['drain', 'purple'])
    expect(r).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: SLUICE_UNKNOWN_TARGET: unknown version "purple" (version)\n',
    })
  })

  test('rollout start posts canary, baseline and onBreach and prints the new rollout', async () => {
    const r = await ctl(['rollout', 'start', 'green', '--baseline', 'blue', '--on-breach', 'pause'])
    expect(r.code).toBe(0)
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/v1/rollout' })
    expect(JSON.parse(seen[0]!.body)).toEqual({ canary: 'green', baseline: 'blue', onBreach: 'pause' })
    expect(r.stdout).toContain('rollout started\nrollout\n  status     progressing\n')
    expect(r.stdout).toContain('  on breach  pause\n')
  })

  test('a rollout control with nothing to act on exits 1 with the 409 error', async () => {
    answers.set('POST /v1/rollout/pause', [409, err('SLUICE_NO_ACTIVE_ROLLOUT', 'no rollout is progressing')])
    const r = await ctl(['rollout', 'pause'])
    expect(r).toEqual({ code: 1, stdout: '', stderr: 'error: SLUICE_NO_ACTIVE_ROLLOUT: no rollout is progressing\n' })
    expect(seen[0]).toMatchObject({ method: 'POST', url: '/v1/rollout/pause', body: '' })
  })

  test('rollout promote prints the rollout from the answer, whole state or rollout alone', async () => {
    answers.set('POST /v1/rollout/promote', [200, { ...STATE, rollout: { ...STATE.rollout, status: 'promoted' } }])
    expect((await ctl(['rollout', 'promote'])).stdout).toContain('rollout promoted\nrollout\n  status  promoted\n')
    answers.set('POST /v1/rollout/abort', [
      200,
      { ...STATE.rollout, status: 'rolled_back', reason: 'aborted by alice' },
    ])
    const r = await ctl(['rollout', 'abort'])
    expect(r.stdout).toContain('rollout aborted\n')
    expect(r.stdout).toContain('  reason  aborted by alice\n')
  })

  test('rollout status reads the state; rollout history reads /v1/rollouts', async () => {
    answers.set('GET /v1/rollouts', [200, []])
    expect((await ctl(['rollout', 'status'])).stdout).toBe(
      'rollout\n  status  progressing\n  canary  green (baseline blue)\n  step    2\n  reason  -\n',
    )
    expect((await ctl(['rollout', 'history'])).stdout).toBe('no rollouts yet\n')
    expect(seen.map((s) => s.url)).toEqual(['/v1/state', '/v1/rollouts'])
  })

  test('reload that the API refuses prints every problem and exits 1', async () => {
    answers.set('POST /v1/reload', [
      400,
      {
        error: {
          code: 'SLUICE_CONFIG_INVALID',
          message: 'weights.green: unknown version "green"',
          path: 'weights.green',
          problems: [{ path: 'weights.green', message: 'unknown version "green"' }],
        },
      },
    ])
    const r = await ctl(['reload'])
    expect(r.code).toBe(1)
    expect(r.stderr).toBe(
      'error: SLUICE_CONFIG_INVALID: weights.green: unknown version "green" (weights.green)\n  weights.green: unknown version "green"\n',
    )
    answers.set('POST /v1/reload', [200, {}])
    expect(await ctl(['reload'])).toEqual({ code: 0, stdout: 'reloaded\n', stderr: '' })
  })

  test('audit prints one line per change', async () => {
    const r = await ctl(['audit'])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(
      'AT                    ACTION   SOURCE  ACTOR  BEFORE -> AFTER               REASON\n' +
        '2024-05-01 12:00:00Z  weights  admin   alice  blue=100 -> blue=90 green=10  -\n',
    )
  })

  test('mirror start sends the mirror section, mirror stop sends null', async () => {
    expect(await ctl(['mirror', 'start', 'green', '10'])).toEqual({
      code: 0,
      stdout: 'mirroring 10% of eligible requests to green\n',
      stderr: '',
    })
    expect(await ctl(['mirror', 'stop'])).toEqual({ code: 0, stdout: 'mirroring stopped\n', stderr: '' })
    expect(seen.map((s) => [s.method, s.url, s.body])).toEqual([
      ['PUT', '/v1/mirror', '{"version":"green","percent":10}'],
      ['PUT', '/v1/mirror', 'null'],
    ])
  })

  test('mirror mismatches lists what the API reports', async () => {
    answers.set('GET /v1/mirror/mismatches', [
      200,
      [{ at: 1714564800000, path: '/a', primaryStatus: 200, shadowStatus: 500 }],
    ])
    const r = await ctl(['mirror', 'mismatches'])
    expect(r.code).toBe(0)
    expect(r.stdout).toBe(
      'AT                    PATH  PRIMARY STATUS  SHADOW STATUS\n2024-05-01 12:00:00Z  /a    200             500\n',
    )
  })

  test('a wrong or missing token exits 1 with the 401 error', async () => {
    const wrong = await ctl(['state'], { SLUICE_ADMIN_URL: base, SLUICE_ADMIN_TOKEN: 'nope' })
    expect(wrong).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: SLUICE_UNAUTHORIZED: missing or wrong bearer token\n',
    })
    const missing = await ctl(['state'], { SLUICE_ADMIN_URL: `${base}/` })
    expect(missing.code).toBe(1)
    expect(missing.stderr).toContain('hint: SLUICE_ADMIN_TOKEN is not set\n')
    expect(seen[1]!.headers.authorization).toBeUndefined()
    expect(seen[1]!.url).toBe('/v1/state')
  })

  test('an admin API that cannot be reached exits 1 naming its URL', async () => {
    const gone = createServer()
    await new Promise<void>((resolve) => gone.listen(0, '127.0.0.1', resolve))
    const url = `http://127.0.0.1:${(gone.address() as AddressInfo).port}`
    await new Promise<void>((resolve) => gone.close(() => resolve()))
    const r = await ctl(['state'], { SLUICE_ADMIN_URL: url, SLUICE_ADMIN_TOKEN: TOKEN })
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expect(r.stderr).toMatch(new RegExp(`^error: cannot reach admin API at ${url}: .*ECONNREFUSED`))
  })
})

describe('sluice ctl against the real proxy', () => {
  let running: Running
  let env: NodeJS.ProcessEnv
  // Nothing is proxied here: the instances only have to be declared.
  const BLUE = 'http://127.0.0.1:9'
  const GREEN = 'http://127.0.0.1:10'

  beforeAll(async () => {
    const config = buildConfig(
      {
        listen: { host: '127.0.0.1', port: 0 },
        admin: { host: '127.0.0.1', port: 0, tokens: [{ name: 'alice', token: TOKEN }] },
        versions: { blue: { instances: [{ url: BLUE }] }, green: { instances: [{ url: GREEN }] } },
        weights: { blue: 100 },
      },
      undefined,
    )
    running = await runSluice(config, { log: pino({ level: 'silent' }) })
    env = { SLUICE_ADMIN_URL: `http://127.0.0.1:${running.adminPort}`, SLUICE_ADMIN_TOKEN: TOKEN }
  })

  afterAll(async () => {
    await running?.stop()
  })

  test('weights, drain and undrain change the state that ctl state prints, and audit names the actor', async () => {
    expect((await ctl(['weights', 'blue=90', 'green=10'], env)).stdout).toBe('weights  blue=90 green=10\n')
    expect((await ctl(['drain', GREEN], env)).code).toBe(0)
    const state = await ctl(['state'], env)
    expect(state.code).toBe(0)
    expect(state.stdout).toContain('  blue         90  ##################..')
    expect(state.stdout).toMatch(new RegExp(`  green +${GREEN.replaceAll('.', '\\.')} +\\S+ +yes `))
    expect((await ctl(['undrain', GREEN], env)).code).toBe(0)
    const json = JSON.parse((await ctl(['state', '--json'], env)).stdout) as { weights: Record<string, number> }
    expect(json.weights).toEqual({ blue: 90, green: 10 })
    const audit = await ctl(['audit'], env)
    expect(audit.code).toBe(0)
    const lines = audit.stdout.trimEnd().split('\n')
    expect(lines[0]).toMatch(/^AT +ACTION +SOURCE +ACTOR +BEFORE -> AFTER +REASON$/)
    expect(lines.slice(1).map((l) => l.split(/ {2,}/).slice(1, 4))).toEqual([
      ['weights', 'admin', 'alice'],
      ['drain', 'admin', 'alice'],
      ['undrain', 'admin', 'alice'],
    ])
    expect(lines[1]).toContain('blue=100 green=0 -> blue=90 green=10')
  })

  test('the errors of the real API come out as error: CODE: message (path) with exit 1', async () => {
    const sum = await ctl(['weights', 'blue=50', 'green=10'], env)
    expect(sum.code).toBe(1)
    expect(sum.stderr).toMatch(/^error: SLUICE_INVALID_WEIGHTS: .*60/)
    const unknown = await ctl(['drain', 'purple'], env)
    expect(unknown).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: SLUICE_UNKNOWN_TARGET: unknown version "purple" (version)\n',
    })
    const wrong = await ctl(['state'], { ...env, SLUICE_ADMIN_TOKEN: 'nope' })
    expect(wrong).toEqual({
      code: 1,
      stdout: '',
      stderr: 'error: SLUICE_UNAUTHORIZED: missing or wrong bearer token\n',
    })
  })
})
