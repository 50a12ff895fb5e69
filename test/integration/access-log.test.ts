import { pino } from 'pino'
import { afterAll, beforeAll, describe, expect, it, vi } from 'vitest'
import { buildConfig } from '../../src/config/load.js'
import { type Running, runSluice } from '../../src/lifecycle/run.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

async function start(access: boolean, upstream: TestUpstream, lines: string[]): Promise<Running> {
  const config = buildConfig(
    {
      listen: { host: '127.0.0.1', port: 0 },
      admin: { host: '127.0.0.1', port: 0, token: 't' },
      versions: { blue: { instances: [{ url: upstream.url }] } },
      log: { level: 'info', access },
    },
    undefined,
  )
  return runSluice(config, { log: pino({ level: 'info' }, { write: (l: string) => void lines.push(l) }) })
}

describe('the access log', () => {
  let blue: TestUpstream
  beforeAll(async () => {
    blue = await startUpstream('blue')
  })
  afterAll(async () => {
    await blue.close()
  })

  it('writes one JSON line per request when log.access is on', async () => {
    const lines: string[] = []
    const p = await start(true, blue, lines)
    try {
      const res = await fetch(`http://127.0.0.1:${p.port}/orders?id=7`, { method: 'POST', body: 'x' })
      await res.text()
      const entry = await vi.waitFor(
        () => {
          const found = lines.map((l) => JSON.parse(l)).find((e) => e.log === 'access')
          expect(found, 'the access line').toBeDefined()
          return found
        },
        { timeout: 10_000, interval: 20 },
      )
      expect(entry).toMatchObject({ method: 'POST', path: '/orders?id=7', status: 200, version: 'blue', instance: blue.url })
      expect(typeof entry.ms).toBe('number')
    } finally {
      await p.stop()
    }
  })

  it('writes nothing per request when it is off (the default)', async () => {
    const lines: string[] = []
    const p = await start(false, blue, lines)
    try {
      for (let i = 0; i < 5; i++) await (await fetch(`http://127.0.0.1:${p.port}/`)).text()
      expect(lines.map((l) => JSON.parse(l)).filter((e) => e.log === 'access')).toEqual([])
      expect(lines.some((l) => JSON.parse(l).msg === 'listening')).toBe(true)
    } finally {
      await p.stop()
    }
  })
})
