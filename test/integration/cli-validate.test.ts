import { beforeAll, describe, expect, it } from 'vitest'
import { execFileSync } from 'node:child_process'
import { requireConfigPath } from '../../src/cli/args.js'
import { runCommand } from '../../src/cli/commands.js'
import type { CliIo } from '../../src/cli/io.js'
import { configErrorLine, runValidate } from '../../src/cli/validate.js'
import { loadConfigFile } from '../../src/config/load.js'
import { ConfigError } from '../../src/errors.js'
import { buildOnce, type CliResult, MAIN, ROOT, runCli } from '../helpers/cli.js'

const DIR = 'test/fixtures/configs'

/** Each bad file and every line `sluice validate` prints for it (paths are relative to the repo root). */
const BAD: [file: string, lines: (string | RegExp)[]][] = [
  ['unknown-key.yaml', ['config error: listen.prot: unknown key']],
  ['weights-not-100.yaml', ['config error: weights: weights must sum to 100, not 110']],
  ['unknown-version-in-weights.yaml', ['config error: weights.green: unknown version "green"']],
  ['bad-version-name.yaml', ['config error: versions.Blue: version name must match ^[a-z][a-z0-9_-]{0,31}$']],
  [
    'non-http-url.yaml',
    [
      'config error: versions.blue.instances.0.url: must be an http:// or https:// URL with host and optional port, and no path or query',
    ],
  ],
  ['unset-env.yaml', ['config error: admin.token: environment variable SLUICE_FIXTURE_UNSET_TOKEN is not set']],
  [
    'public-admin-without-token.yaml',
    ['config error: admin.token: required when admin.host "0.0.0.0" is not loopback'],
  ],
  ['bad-sticky-key.yaml', ['config error: sticky.keys.1: must be "header:NAME" or "cookie:NAME"']],
  ['rollout-last-step-not-100.yaml', ['config error: rollout.steps.1.weight: the last step must be 100 (promotion)']],
  [
    'duplicate-instance.yaml',
    ['config error: versions.green.instances.0.url: duplicate instance (also in versions.blue)'],
  ],
  [
    'yaml-syntax-error.yaml',
    [
      `config error: cannot parse ${DIR}/yaml-syntax-error.yaml: Flow map in block collection must be sufficiently indented and end with a } at line 6, column 1`,
    ],
  ],
  ['empty.yaml', [`config error: ${DIR}/empty.yaml is empty`]],
  [
    'trailing-comma.json',
    // V8's JSON message differs between Node versions after the position.
    [/^config error: cannot parse test\/fixtures\/configs\/trailing-comma\.json: .*JSON at position 81/],
  ],
  [
    'many-problems.yaml',
    [
      'config error: listen.port: Too big: expected number to be <=65535',
      'config error: retries.atempts: unknown key',
      'config error: weights.green: unknown version "green"',
    ],
  ],
  ['does-not-exist.yaml', [/^config error: cannot read test\/fixtures\/configs\/does-not-exist\.yaml: ENOENT/]],
]

const ENV = { SLUICE_FIXTURE_UNSET_TOKEN: undefined }

function expectLines(text: string, expected: (string | RegExp)[]): void {
  const lines = text.split('\n')
  expect(lines.pop()).toBe('') // ends with a newline
  expect(lines).toHaveLength(expected.length)
  expected.forEach((e, i) => {
    if (typeof e === 'string') expect(lines[i]).toBe(e)
    else expect(lines[i]).toMatch(e)
  })
}

/** Runs a command in-process with its output captured, as the built CLI would write it. */
async function inProcess(run: (io: CliIo) => Promise<number>): Promise<Omit<CliResult, 'signal'>> {
  let stdout = ''
  let stderr = ''
  const io: CliIo = {
    env: { ...process.env, ...ENV },
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
  }
  return { code: await run(io), stdout, stderr }
}

/** The one line `serve` prints for a bad config: the first problem, and how many more. */
function serveLine(lines: (string | RegExp)[]): string | RegExp {
  const first = lines[0]!
  const more = lines.length > 1 ? ` (and ${lines.length - 1} more: run sluice validate)` : ''
  return typeof first === 'string' ? first + more : first
}

// The fixtures run in-process (the same code the CLI runs, without a Node
// start per file); the last describe block spawns the built CLI for real.
describe('bad config files', () => {
  it.each(BAD)('sluice validate --config %s prints every problem and exits 1', async (file, lines) => {
    const r = await inProcess((io) => runValidate(['--config', `${DIR}/${file}`], io))
    expect(r.code).toBe(1)
    expectLines(r.stdout, lines)
    expect(r.stderr).toBe('')
  })

  it.each(BAD)('sluice serve --config %s would print one line', async (file, lines) => {
    const err = await loadConfigFile(`${DIR}/${file}`, { ...process.env, ...ENV }).then(
      () => undefined,
      (e: unknown) => e,
    )
    expect(err).toBeInstanceOf(ConfigError)
    expectLines(configErrorLine(err as ConfigError), [serveLine(lines)])
  })
})

describe('usage errors exit 2', () => {
  it.each([
    [[], '--config FILE is required\nusage: sluice validate --config FILE\n'],
    [['--config'], '--config needs a file\nusage: sluice validate --config FILE\n'],
    [['--config', 'a.yaml', '--verbose'], 'unknown argument "--verbose"\nusage: sluice validate --config FILE\n'],
  ])('sluice validate %j', async (args, stderr) => {
    const r = await inProcess((io) => runValidate(args, io))
    expect({ code: r.code, stdout: r.stdout, stderr: r.stderr }).toEqual({ code: 2, stdout: '', stderr })
  })

  it.each([
    [[], '--config FILE is required\nusage: sluice serve --config FILE\n'],
    [['config.yaml'], 'unknown argument "config.yaml"\nusage: sluice serve --config FILE\n'],
  ])('sluice serve %j', (args, stderr) => {
    let out = ''
    expect(requireConfigPath(args, 'serve', (t) => void (out += t))).toBeUndefined()
    expect(out).toBe(stderr)
  })
})

describe('the command line', () => {
  it('an unknown command prints the usage', async () => {
    const r = await inProcess((io) => runCommand(['frobnicate'], io))
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^unknown command "frobnicate"\nusage: sluice <command>\n/)
  })

  it('no command at all prints the usage', async () => {
    const r = await inProcess((io) => runCommand([], io))
    expect(r.code).toBe(2)
    expect(r.stderr).toMatch(/^usage: sluice <command>\n/)
  })
})

describe.concurrent('the built CLI, spawned', () => {
  beforeAll(() => buildOnce(), 180_000)

  it('sluice serve with a bad config exits 1 with one line on stderr', async () => {
    const [file, lines] = BAD.find(([f]) => f === 'many-problems.yaml')!
    const r = await runCli(['serve', '--config', `${DIR}/${file}`], ENV)
    expect(r.code).toBe(1)
    expect(r.stdout).toBe('')
    expectLines(r.stderr, [serveLine(lines)])
  })

  it('the built entry point runs on its own, as npx sluice runs it (shebang and executable bit)', () => {
    const out = execFileSync(MAIN, ['validate', '--config', 'config/blue-green.yaml'], {
      cwd: ROOT,
      encoding: 'utf8',
      env: { ...process.env, SLUICE_ADMIN_TOKEN: 'any' },
    })
    expect(out).toBe('ok\n')
  })
})
