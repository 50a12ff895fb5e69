import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { Redis } from 'ioredis'
import { waitFor } from './wait.js'

export interface TestRedis {
  readonly port: number
  readonly url: string
  /** SIGKILL: no goodbye to clients, nothing persisted. */
  kill(): Promise<void>
  /** Starts redis-server again on the same port, empty (no persistence). */
  restart(): Promise<void>
  /** A plain client for inspecting keys in tests (closed by `stop`). */
  client(): Redis
  stop(): Promise<void>
}

/**
 * Starts a real `redis-server` on a free loopback port, without
 * persistence. redis-server cannot bind port 0 and report it, so a port is
 * found by binding a node server to port 0 and closing it, and a start that
 * lost the race (address in use) is retried on another port.
 * Throws if redis-server is not installed: these tests never skip.
 */
export async function startRedis(): Promise<TestRedis> {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (found.error || found.status !== 0) {
    throw new Error(
      'redis-server is not installed (apt-get install -y redis-server): the Redis store tests need a real one',
    )
  }
  let child: ChildProcess | undefined
  let port = 0
  for (let attempt = 0; attempt < 10 && child === undefined; attempt++) {
    port = await freePort()
    child = await launch(port)
  }
  if (child === undefined) throw new Error('could not start redis-server on a free port after 10 tries')
  const clients: Redis[] = []
  let current: ChildProcess | undefined = child
  const kill = async () => {
    const c = current
    current = undefined
    if (!c || c.exitCode !== null) return
    const exited = new Promise((r) => c.once('exit', r))
    c.kill('SIGKILL')
    await exited
  }
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    kill,
    async restart() {
      await kill()
      // The port was just freed by our own process; the kernel lets it be bound again at once.
      const c = await waitFor(() => launch(port), `redis-server to start again on port ${port}`, 10_000, 100)
      current = c
    },
    client() {
      const c = new Redis(port, '127.0.0.1', { lazyConnect: false, maxRetriesPerRequest: 1 })
      c.on('error', () => {})
      clients.push(c)
      return c
    },
    async stop() {
      for (const c of clients) c.disconnect()
      await kill()
    },
  }
}

/** Starts redis-server on `port` and waits for PING; undefined if the port was taken. */
async function launch(port: number): Promise<ChildProcess | undefined> {
  const child = spawn(
    'redis-server',
    ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning'],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  let output = ''
  child.stdout?.on('data', (d: Buffer) => {
    output += d.toString()
  })
  child.stderr?.on('data', (d: Buffer) => {
    output += d.toString()
  })
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (/address already in use|EADDRINUSE/i.test(output)) return undefined
      throw new Error(`redis-server exited at start: ${output.trim()}`)
    }
    if (await ping(port)) return child
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      await exited
      throw new Error(`redis-server did not answer PING on port ${port}: ${output.trim()}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

function ping(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tcpConnect(port, '127.0.0.1')
    let buf = ''
    s.setTimeout(1000)
    s.on('connect', () => s.write('PING\r\n'))
    s.on('data', (d) => {
      buf += d.toString()
      if (buf.includes('\r\n')) {
        s.destroy()
        resolve(buf.startsWith('+PONG'))
      }
    })
    s.on('error', () => resolve(false))
    s.on('timeout', () => {
      s.destroy()
      resolve(false)
    })
  })
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer()
    srv.once('error', reject)
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address()
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))))
    })
  })
}

export interface TcpRelay {
  readonly url: string
  /** Cuts every connection and refuses new ones: a network partition for whoever uses this URL. */
  cut(): Promise<void>
  /** Accepts connections again (on the same port). */
  heal(): Promise<void>
  close(): Promise<void>
}

/**
 * A TCP relay in front of Redis, bound to port 0, so one proxy can lose
 * Redis while the others keep it.
 */
export async function startRelay(targetPort: number): Promise<TcpRelay> {
  const sockets = new Set<Socket>()
  let server: Server
  const listen = (port: number) =>
    new Promise<number>((resolve, reject) => {
      server = createServer((client) => {
        const upstream = tcpConnect(targetPort, '127.0.0.1')
        sockets.add(client)
        sockets.add(upstream)
        client.pipe(upstream)
        upstream.pipe(client)
        const end = () => {
          client.destroy()
          upstream.destroy()
          sockets.delete(client)
          sockets.delete(upstream)
        }
        client.on('error', end)
        upstream.on('error', end)
        client.on('close', end)
        upstream.on('close', end)
      })
      server.once('error', reject)
      server.listen(port, '127.0.0.1', () => {
        const addr = server.address()
        resolve(typeof addr === 'object' && addr ? addr.port : 0)
      })
    })
  const port = await listen(0)
  let open = true
  const shut = async () => {
    if (!open) return
    open = false
    const closed = new Promise((r) => server.close(r))
    for (const s of sockets) s.destroy()
    sockets.clear()
    await closed
  }
  return {
    url: `redis://127.0.0.1:${port}`,
    cut: shut,
    async heal() {
      if (open) return
      await listen(port)
      open = true
    },
    close: shut,
  }
}
