import { once } from 'node:events'
import { createServer, type Socket, connect } from 'node:net'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { dropClearedTimer } from '../../../src/websocket/socket-timer.js'

describe('dropClearedTimer', () => {
  const server = createServer((s) => s.on('error', () => {}))
  const open: Socket[] = []
  let port = 0

  beforeAll(async () => {
    server.listen(0, '127.0.0.1')
    await once(server, 'listening')
    port = (server.address() as { port: number }).port
  })
  afterAll(async () => {
    for (const s of open) s.destroy()
    server.close()
    await once(server, 'close')
  })

  async function socket(): Promise<Socket> {
    const s = connect(port, '127.0.0.1')
    open.push(s)
    await once(s, 'connect')
    return s
  }

  const timerOf = (s: Socket) => {
    const k = Object.getOwnPropertySymbols(s).find((x) => x.description === 'timeout')!
    return (s as unknown as Record<symbol, unknown>)[k]
  }

  it('lets go of a cleared idle timer, and a later timeout still fires', async () => {
    const s = await socket()
    s.setTimeout(60_000)
    s.setTimeout(0)
    expect(timerOf(s)).not.toBeNull()
    dropClearedTimer(s)
    expect(timerOf(s)).toBeNull()
    s.setTimeout(20)
    await once(s, 'timeout')
  })

  it('leaves a running idle timer alone', async () => {
    const s = await socket()
    s.setTimeout(20)
    dropClearedTimer(s)
    expect(timerOf(s)).not.toBeNull()
    await once(s, 'timeout')
  })
})
