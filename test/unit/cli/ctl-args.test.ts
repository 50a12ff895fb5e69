import fc from 'fast-check'
import { describe, expect, test } from 'vitest'
import { type ParseResult, parseCtlArgs } from '../../../src/cli/ctl-args.js'

function command(argv: string[]) {
  const r = parseCtlArgs(argv)
  if (!r.ok) throw new Error(`expected ok, got: ${r.message}`)
  return r.value
}

function usageError(argv: string[]): string {
  const r: ParseResult = parseCtlArgs(argv)
  if (r.ok) throw new Error(`expected a usage error for ${argv.join(' ')}`)
  return r.message
}

const versionName = fc.stringMatching(/^[a-z][a-z0-9_-]{0,31}$/)

describe('sluice ctl arguments', () => {
  test('state and state --json', () => {
    expect(command(['state'])).toEqual({ command: { verb: 'state' }, json: false })
    expect(command(['state', '--json'])).toEqual({ command: { verb: 'state' }, json: true })
    expect(command(['--json', 'state'])).toEqual({ command: { verb: 'state' }, json: true })
  })

  test('help in any form asks for the usage', () => {
    for (const argv of [['help'], ['--help'], ['-h'], ['weights', '--help'], ['rollout', 'start', '-h']]) {
      expect(command(argv).command).toMatchObject({ verb: 'help' })
    }
  })

  test('no command, an unknown command and stray arguments are usage errors', () => {
    expect(usageError([])).toBe('missing command')
    expect(usageError(['frobnicate'])).toBe('unknown command "frobnicate"')
    expect(usageError(['state', 'blue'])).toContain('takes no arguments')
    expect(usageError(['reload', 'now'])).toContain('takes no arguments')
  })

  test('weights blue=90 green=10 becomes a weights object', () => {
    expect(command(['weights', 'blue=90', 'green=10']).command).toEqual({
      verb: 'weights',
      weights: { blue: 90, green: 10 },
    })
  })

  test('any set of version names and integer percents goes through unchanged', () => {
    fc.assert(
      fc.property(fc.dictionary(versionName, fc.integer({ min: 0, max: 100 }), { minKeys: 1 }), (weights) => {
        const argv = ['weights', ...Object.entries(weights).map(([k, v]) => `${k}=${v}`)]
        expect(command(argv).command).toEqual({ verb: 'weights', weights: { ...weights } })
      }),
    )
  })

  test('weights that are not integer percents are usage errors naming the version', () => {
    expect(usageError(['weights', 'blue=abc'])).toBe('weights.blue: "abc" is not an integer from 0 to 100')
    expect(usageError(['weights', 'blue=101'])).toContain('weights.blue')
    expect(usageError(['weights', 'blue=9.5'])).toContain('weights.blue')
    expect(usageError(['weights', 'blue=-1'])).toContain('weights.blue')
    expect(usageError(['weights', 'blue='])).toContain('weights.blue')
    expect(usageError(['weights', 'blue'])).toBe('weights: "blue" is not <version>=<percent>')
    expect(usageError(['weights', 'Blue=10'])).toContain('is not <version>=<percent>')
    expect(usageError(['weights', 'blue=50', 'blue=50'])).toBe('weights.blue: given twice')
    expect(usageError(['weights'])).toContain('at least one')
  })

  test('drain and undrain take a version, or a url when it starts with http://', () => {
    expect(command(['drain', 'blue']).command).toEqual({ verb: 'drain', target: { version: 'blue' } })
    expect(command(['undrain', 'http://10.0.0.11:3000']).command).toEqual({
      verb: 'undrain',
      target: { url: 'http://10.0.0.11:3000' },
    })
    expect(usageError(['drain'])).toBe('drain needs one <version> or <url>')
    expect(usageError(['drain', 'blue', 'green'])).toBe('drain needs one <version> or <url>')
    expect(usageError(['drain', '10.0.0.11:3000'])).toContain('is not a version name')
    expect(usageError(['drain', 'http://'])).toContain('is not a valid URL')
  })

  test('rollout start takes a canary and optional baseline, on-breach and steps', () => {
    expect(command(['rollout', 'start', 'green']).command).toEqual({ verb: 'rollout-start', canary: 'green' })
    expect(command(['rollout', 'start', 'green', '--baseline', 'blue', '--on-breach', 'pause']).command).toEqual({
      verb: 'rollout-start',
      canary: 'green',
      baseline: 'blue',
      onBreach: 'pause',
    })
    expect(command(['rollout', 'start', '--baseline=blue', 'green', '--steps=5:1000,50,100']).command).toEqual({
      verb: 'rollout-start',
      canary: 'green',
      baseline: 'blue',
      steps: [{ weight: 5, holdMs: 1000 }, { weight: 50 }, { weight: 100 }],
    })
  })

  test('--steps marks the steps that wait for an approval', () => {
    expect(command(['rollout', 'start', 'green', '--steps', '5:1000,25:2000:approve,50:approve,100']).command).toEqual({
      verb: 'rollout-start',
      canary: 'green',
      steps: [{ weight: 5, holdMs: 1000 }, { weight: 25, holdMs: 2000, approval: true }, { weight: 50, approval: true }, { weight: 100 }],
    })
  })

  test('a malformed rollout start is a usage error', () => {
    expect(usageError(['rollout', 'start'])).toBe('rollout start needs a <canary> version')
    expect(usageError(['rollout', 'start', 'green', 'blue'])).toContain('unexpected "blue"')
    expect(usageError(['rollout', 'start', 'green', '--on-breach', 'explode'])).toContain('pause or rollback')
    expect(usageError(['rollout', 'start', 'green', '--baseline'])).toContain('--baseline needs a value')
    expect(usageError(['rollout', 'start', 'green', '--canary', 'x'])).toContain('unknown argument "--canary"')
    expect(usageError(['rollout', 'start', 'green', '--steps', '5,x'])).toContain('"x" is not W[:HOLDMS][:approve]')
    expect(usageError(['rollout', 'start', 'green', '--steps', '5:1:2'])).toContain('is not W[:HOLDMS][:approve]')
    expect(usageError(['rollout', 'start', 'green', '--steps', '5:1s'])).toContain('hold')
  })

  test('rollout controls, status and history', () => {
    for (const action of ['pause', 'resume', 'promote', 'abort', 'approve'] as const) {
      expect(command(['rollout', action]).command).toEqual({ verb: 'rollout', action })
    }
    expect(command(['rollout', 'status']).command).toEqual({ verb: 'rollout-status' })
    expect(command(['rollout', 'history', '--json'])).toEqual({ command: { verb: 'rollout-history' }, json: true })
    expect(usageError(['rollout'])).toContain('rollout needs')
    expect(usageError(['rollout', 'restart'])).toBe('unknown rollout command "restart"')
    expect(usageError(['rollout', 'pause', 'now'])).toContain('takes no arguments')
  })

  test('mirror start, stop and mismatches', () => {
    expect(command(['mirror', 'start', 'green', '10']).command).toEqual({
      verb: 'mirror-start',
      version: 'green',
      percent: 10,
    })
    expect(command(['mirror', 'stop']).command).toEqual({ verb: 'mirror-stop' })
    expect(command(['mirror', 'mismatches']).command).toEqual({ verb: 'mirror-mismatches' })
    expect(usageError(['mirror', 'start', 'green'])).toBe('mirror start needs <version> <percent>')
    expect(usageError(['mirror', 'start', 'green', 'ten'])).toContain('"ten" is not an integer from 0 to 100')
    expect(usageError(['mirror'])).toContain('mirror needs')
    expect(usageError(['mirror', 'pause'])).toBe('unknown mirror command "pause"')
  })

  test('instances add and remove', () => {
    expect(command(['instances', 'add', 'green', 'http://10.0.0.9:8080']).command).toEqual({
      verb: 'instances-add',
      version: 'green',
      url: 'http://10.0.0.9:8080',
    })
    expect(command(['instances', 'remove', 'http://10.0.0.9:8080']).command).toEqual({
      verb: 'instances-remove',
      url: 'http://10.0.0.9:8080',
    })
    expect(usageError(['instances'])).toBe('instances needs add|remove')
    expect(usageError(['instances', 'list'])).toBe('unknown instances command "list"')
    expect(usageError(['instances', 'add', 'green'])).toBe('instances add needs <version> <url>')
    expect(usageError(['instances', 'add', 'Green', 'http://a:1'])).toBe('instances add: "Green" is not a version name')
    expect(usageError(['instances', 'add', 'green', 'ftp://a'])).toBe('instances add: "ftp://a" is not an http:// URL')
    expect(usageError(['instances', 'remove'])).toBe('instances remove needs one <url>')
  })
})
