import { createServer, type IncomingHttpHeaders, type ServerResponse } from 'node:http'
import type { AddressInfo } from 'node:net'

export interface Received {
  path: string
  headers: IncomingHttpHeaders
  body: any
  at: number
}

/** What a path answers: a status code, or `hang` (never answers). */
export type ReceiverMode = number | 'hang'

export interface WebhookReceiver {
  readonly url: string
  readonly received: Received[]
  /** Every POST to `path`, in arrival order. */
  on(path: string): Received[]
  answer(path: string, mode: ReceiverMode): void
  close(): Promise<void>
}

/** A real HTTP server that records every POST (JSON bodies parsed) and answers as the test says (204 unless told). */
export async function startReceiver(): Promise<WebhookReceiver> {
  const received: Received[] = []
  const modes = new Map<string, ReceiverMode>()
  const hung: ServerResponse[] = []
  const server = createServer((req, res) => {
    const chunks: Buffer[] = []
    req.on('data', (c: Buffer) => chunks.push(c))
    req.on('end', () => {
      const text = Buffer.concat(chunks).toString()
      let body: unknown = text
      try {
        body = JSON.parse(text)
      } catch {
        // kept as text
      }
      const path = req.url ?? '/'
      received.push({ path, headers: req.headers, body, at: Date.now() })
      const mode = modes.get(path) ?? 204
      if (mode === 'hang') hung.push(res)
      else res.writeHead(mode).end()
    })
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    received,
    on: (path) => received.filter((r) => r.path === path),
    answer: (path, mode) => void modes.set(path, mode),
    close: () =>
      new Promise((r) => {
        for (const res of hung) res.destroy()
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}
