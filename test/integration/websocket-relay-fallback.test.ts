import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import type { WebSocket } from 'ws'
import { buildOnce, type ServeProcess, startServe } from '../helpers/cli.js'
import { openClient, startWsUpstream, type WsUpstream, wsUrl } from '../helpers/ws-upstream.js'

/**
 * bufferutil is an optional dependency: where its prebuilt binary does not
 * load, ws masks in JavaScript. WS_NO_BUFFER_UTIL makes ws skip it, as on
 * such a platform; the relay must echo the same bytes, in order, either way.
 */
describe('the relay without the native masker', () => {
  let upstream: WsUpstream
  let proxy: ServeProcess
  let dir: string
  let ws: WebSocket | undefined

  beforeAll(async () => {
    await buildOnce()
    upstream = await startWsUpstream('blue')
    dir = mkdtempSync(join(tmpdir(), 'sluice-ws-fallback-'))
    const file = join(dir, 'sluice.yaml')
    writeFileSync(
      file,
      `listen: { host: 127.0.0.1, port: 0 }\nadmin: { host: 127.0.0.1, port: 0 }\nlog: { level: warn }\n` +
        `versions:\n  blue:\n    instances:\n      - url: ${upstream.url}\n`,
    )
    proxy = await startServe(file, { WS_NO_BUFFER_UTIL: '1' })
  })
  afterAll(async () => {
    ws?.terminate()
    await proxy?.stop()
    await upstream?.close()
    if (dir !== undefined) rmSync(dir, { recursive: true, force: true })
  })

  it('echoes a burst of text and binary messages of every size intact and in order', async () => {
    ws = await openClient(wsUrl(proxy.url))
    const sent: { data: Buffer; isBinary: boolean }[] = []
    for (let i = 0; i < 200; i++) {
      const size = [0, 7, 31, 48, 125, 126, 4096, 70_000][i % 8]!
      const isBinary = i % 3 !== 0
      const data = isBinary ? Buffer.alloc(size, i & 0xff) : Buffer.from('é'.repeat(size >> 1) + String(i))
      sent.push({ data, isBinary })
    }
    const got: { data: Buffer; isBinary: boolean }[] = []
    const client = ws
    const all = new Promise<void>((resolve) =>
      client.on('message', (data, isBinary) => {
        got.push({ data: data as Buffer, isBinary })
        if (got.length === sent.length) resolve()
      }),
    )
    for (const m of sent) client.send(m.data, { binary: m.isBinary })
    await all
    for (let i = 0; i < sent.length; i++) {
      expect(got[i]!.isBinary, `message ${i}`).toBe(sent[i]!.isBinary)
      expect(Buffer.compare(got[i]!.data, sent[i]!.data), `message ${i}`).toBe(0)
    }
  })
})
