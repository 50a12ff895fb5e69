import { type ChildProcess, execFileSync, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, readFileSync, rmSync } from 'node:fs'
import { createServer, type Server, type Socket, connect as tcpConnect } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { connect as tlsConnect } from 'node:tls'
import { Redis } from 'ioredis'
import { vi } from 'vitest'

export interface TestRedis {
  readonly port: number
  /** With the password and the rediss:// scheme when asked for. */
  readonly url: string
  /** The self-signed certificate of a TLS server (its own CA). */
  readonly ca: string | undefined
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
export async function startRedis(opts: { password?: string; tls?: boolean } = {}): Promise<TestRedis> {
  const found = spawnSync('redis-server', ['--version'], { encoding: 'utf8' })
  if (found.error || found.status !== 0) {
    throw new Error(
      'redis-server is not installed (apt-get install -y redis-server): the Redis store tests need a real one',
    )
  }
  const dir = opts.tls ? mkdtempSync(join(tmpdir(), 'sluice-redis-tls-')) : undefined
  const extra: string[] = opts.password ? ['--requirepass', opts.password] : []
  let ca: string | undefined
  if (dir) {
    execFileSync(
      'openssl',
      [
        'req',
        '-x509',
        '-newkey',
        'rsa:2048',
        '-nodes',
        '-days',
        '1',
        '-subj',
        '/CN=127.0.0.1',
        '-addext',
        'subjectAltName=IP:127.0.0.1',
        '-keyout',
        join(dir, 'key.pem'),
        '-out',
        join(dir, 'cert.pem'),
      ],
      { stdio: 'ignore' },
    )
    ca = readFileSync(join(dir, 'cert.pem'), 'utf8')
    extra.push('--tls-cert-file', join(dir, 'cert.pem'), '--tls-key-file', join(dir, 'key.pem'))
    extra.push('--tls-ca-cert-file', join(dir, 'cert.pem'), '--tls-auth-clients', 'no')
  }
  const start = (p: number) => launch(p, extra, ca)
  let child: ChildProcess | undefined
  let port = 0
  for (let attempt = 0; attempt < 10 && child === undefined; attempt++) {
    port = await freePort()
    child = await start(port)
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
    url: `${ca ? 'rediss' : 'redis'}://${opts.password ? `:${opts.password}@` : ''}127.0.0.1:${port}`,
    ca,
    kill,
    async restart() {
      await kill()
      // The port was just freed by our own process; the kernel lets it be bound again at once.
      const c = await vi.waitFor(() => start(port), { timeout: 10_000, interval: 100 })
      current = c
    },
    client() {
      const c = new Redis(port, '127.0.0.1', {
        maxRetriesPerRequest: 1,
        ...(opts.password ? { password: opts.password } : {}),
        ...(ca ? { tls: { ca } } : {}),
      })
      c.on('error', () => {})
      clients.push(c)
      return c
    },
    async stop() {
      for (const c of clients) c.disconnect()
      await kill()
      if (dir) rmSync(dir, { recursive: true, force: true })
    },
  }
}

/** Starts redis-server on `port` (its TLS port when `ca` is set) and waits for PING; undefined if the port was taken. */
async function launch(port: number, extra: string[], ca: string | undefined): Promise<ChildProcess | undefined> {
  const ports = ca ? ['--port', '0', '--tls-port', String(port)] : ['--port', String(port)]
  const child = spawn(
    'redis-server',
    [...ports, '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no', '--loglevel', 'warning', ...extra],
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
    if (await ping(port, ca)) return child
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      await exited
      throw new Error(`redis-server did not answer PING on port ${port}: ${output.trim()}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Whether a Redis answers on `port` (a password-protected one answers NOAUTH). */
function ping(port: number, ca: string | undefined): Promise<boolean> {
  return new Promise((resolve) => {
    const s = ca
      ? tlsConnect({ port, host: '127.0.0.1', ca }, () => s.write('PING\r\n'))
      : tcpConnect(port, '127.0.0.1', () => s.write('PING\r\n'))
    let buf = ''
    s.setTimeout(1000)
    s.on('data', (d) => {
      buf += d.toString()
      if (buf.includes('\r\n')) {
        s.destroy()
        resolve(buf.startsWith('+PONG') || buf.startsWith('-NOAUTH'))
      }
    })
    s.on('error', () => resolve(false))
    s.on('timeout', () => {
      s.destroy()
      resolve(false)
    })
  })
}

export function freePort(): Promise<number> {
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
