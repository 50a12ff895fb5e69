import { pino } from 'pino'
import { describe, expect, it } from 'vitest'
import { buildConfig } from '../../../src/config/load.js'
import { createStore } from '../../../src/state/store-factory.js'

const base = { versions: { blue: { instances: [{ url: 'http://127.0.0.1:1' }] } }, weights: { blue: 100 } }
const log = pino({ level: 'silent' })

describe('choosing the state store from the config', () => {
  it('without redis, state stays in process', async () => {
    const store = createStore(buildConfig(base, undefined), log)
    expect(store.kind).toBe('memory')
    await store.close()
  })

  it('with redis, proxies share state through it (nothing connects before init)', async () => {
    const config = buildConfig(
      { ...base, redis: { url: 'redis://127.0.0.1:1', keyPrefix: 'a:', leaseMs: 500 } },
      undefined,
    )
    expect(config.redis).toEqual({ url: 'redis://127.0.0.1:1', keyPrefix: 'a:', leaseMs: 500 })
    const store = createStore(config, log)
    expect(store.kind).toBe('redis')
    await store.close()
  })

  it('with state.file, the embedded store is kept in that file; with redis too, redis wins', async () => {
    const state = { file: '/var/lib/sluice/state.json' }
    const store = createStore(buildConfig({ ...base, state }, undefined), log)
    expect(store.kind).toBe('file')
    await store.close()
    const lines: string[] = []
    const capture = pino({ level: 'info' }, { write: (line: string) => lines.push(line) })
    const both = createStore(buildConfig({ ...base, state, redis: { url: 'redis://127.0.0.1:1' } }, undefined), capture)
    expect(both.kind).toBe('redis')
    expect(lines.map((l) => JSON.parse(l))).toMatchObject([
      { msg: 'state.file is not used: redis holds the shared state', stateFile: state.file },
    ])
    await both.close()
    expect(() => buildConfig({ ...base, state: { file: '' } }, undefined)).toThrow(/state\.file/)
    expect(() => buildConfig({ ...base, state: { path: 'x' } }, undefined)).toThrow()
  })

  it('the lease defaults to two seconds and must be at least 100 ms', () => {
    expect(buildConfig({ ...base, redis: { url: 'redis://h:6379' } }, undefined).redis).toEqual({
      url: 'redis://h:6379',
      keyPrefix: 'sluice:',
      leaseMs: 2000,
    })
    expect(() => buildConfig({ ...base, redis: { url: 'redis://h:6379', leaseMs: 10 } }, undefined)).toThrow()
  })
})
