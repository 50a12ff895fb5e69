import * as undici from 'undici'
import { describe, expect, it } from 'vitest'
import { buildConnector, Pool } from '../../../src/proxy/undici-parts.js'

// The parts are loaded by path inside undici's package; an undici upgrade that moves a file must fail here, not at
// a worker's boot in production.
describe('undici parts', () => {
  it('are the very objects undici exports', () => {
    expect(Pool).toBe(undici.Pool)
    expect(buildConnector).toBe(undici.buildConnector)
  })
})
