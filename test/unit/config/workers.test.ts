import { availableParallelism } from 'node:os'
import { describe, expect, it } from 'vitest'
import { buildConfig } from '../../../src/config/load.js'
import { ConfigError } from '../../../src/errors.js'
import { workerCount } from '../../../src/lifecycle/worker-pool.js'

const BLUE = { instances: [{ url: 'http://127.0.0.1:3001' }] }

function problems(workers: unknown): string[] {
  try {
    buildConfig({ versions: { blue: BLUE }, workers }, 'test.yaml', {})
    return []
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    return err.problems.map((p) => `${p.path}: ${p.message}`)
  }
}

describe('workers in the config (README "Workers and self-upgrade")', () => {
  it('takes a count of 1 or more, or auto; absent means one process', () => {
    expect(buildConfig({ versions: { blue: BLUE } }, 'test.yaml', {}).workers).toBeUndefined()
    expect(buildConfig({ versions: { blue: BLUE }, workers: 1 }, 'test.yaml', {}).workers).toBe(1)
    expect(buildConfig({ versions: { blue: BLUE }, workers: 'auto' }, 'test.yaml', {}).workers).toBe('auto')
  })

  it.each([0, -1, 1.5, 'two', null])('refuses %j with one line naming the key', (w) => {
    expect(problems(w)).toEqual(['workers: must be "auto" or a count of 1 or more'])
  })

  it('auto is the cores this process may use', () => {
    expect(workerCount('auto')).toBe(availableParallelism())
    expect(workerCount(3)).toBe(3)
  })
})
