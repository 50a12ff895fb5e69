import { type ChildProcess, spawn } from 'node:child_process'
import { createSocket } from 'node:dgram'
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { Resolver } from 'node:dns/promises'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { vi } from 'vitest'

const DNSMASQ = '/usr/sbin/dnsmasq'
/** Names under this domain are dnsmasq's own: an unknown one answers NXDOMAIN, not REFUSED. */
export const TEST_DOMAIN = 'sluice.test'

export interface SrvRecord {
  target: string
  port: number
}

export interface TestDns {
  readonly port: number
  /** As resolver.servers takes it. */
  readonly server: string
  /** Replaces every A/AAAA record (name -> addresses) and waits until dnsmasq has re-read them (SIGHUP). */
  setHosts(hosts: Record<string, readonly string[]>): Promise<void>
  /** Replaces every SRV record; dnsmasq reads those only at start, so it restarts on the same port. */
  setSrv(records: Record<string, readonly SrvRecord[]>): Promise<void>
  /** SIGKILL: lookups are refused from now on. */
  kill(): Promise<void>
  /** Starts dnsmasq again on the same port with the current records. */
  restart(): Promise<void>
  stop(): Promise<void>
}

/**
 * Runs a real dnsmasq on a free loopback UDP/TCP port, answering only from a
 * hosts file and SRV lines (no upstream, no /etc/hosts). The port is found
 * by binding port 0 and closing it; a start that lost the race is retried.
 * Throws if dnsmasq is missing: these tests never skip.
 */
export async function startDns(
  hosts: Record<string, readonly string[]> = {},
  srv: Record<string, readonly SrvRecord[]> = {},
): Promise<TestDns> {
  if (!existsSync(DNSMASQ)) throw new Error(`${DNSMASQ} is missing (apt-get install -y dnsmasq): the discovery tests need it`)
  const dir = mkdtempSync(join(tmpdir(), 'sluice-dns-'))
  const hostsFile = join(dir, 'hosts')
  const confFile = join(dir, 'dnsmasq.conf')
  writeHosts(hostsFile, hosts)
  writeSrv(confFile, srv)
  let child: ChildProcess | undefined
  let port = 0
  let output = { text: '' }
  for (let attempt = 0; attempt < 10 && child === undefined; attempt++) {
    port = await freeUdpPort()
    output = { text: '' }
    child = await launch(port, hostsFile, confFile, output)
  }
  if (child === undefined) throw new Error('could not start dnsmasq on a free port after 10 tries')
  let current: ChildProcess | undefined = child
  const kill = async () => {
    const c = current
    current = undefined
    if (!c || c.exitCode !== null || c.signalCode !== null) return
    const exited = new Promise((r) => c.once('exit', r))
    c.kill('SIGKILL')
    await exited
  }
  const restart = async () => {
    await kill()
    output = { text: '' }
    current = await vi.waitFor(() => launch(port, hostsFile, confFile, output), { timeout: 10_000, interval: 100 })
  }
  return {
    port,
    server: `127.0.0.1:${port}`,
    async setHosts(next) {
      writeHosts(hostsFile, next)
      const c = current
      if (!c) return
      const reads = count(output.text, `read ${hostsFile}`)
      c.kill('SIGHUP')
      await vi.waitFor(
        () => {
          if (count(output.text, `read ${hostsFile}`) <= reads) throw new Error('dnsmasq has not re-read its hosts file')
        },
        { timeout: 10_000, interval: 20 },
      )
    },
    async setSrv(next) {
      writeSrv(confFile, next)
      if (current) await restart()
    },
    kill,
    restart,
    async stop() {
      await kill()
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

async function launch(
  port: number,
  hostsFile: string,
  confFile: string,
  output: { text: string },
): Promise<ChildProcess | undefined> {
  const child = spawn(
    DNSMASQ,
    [
      '--no-daemon',
      `--port=${port}`,
      '--listen-address=127.0.0.1',
      '--bind-interfaces',
      '--no-resolv',
      '--no-hosts',
      `--addn-hosts=${hostsFile}`,
      `--conf-file=${confFile}`,
      `--local=/${TEST_DOMAIN}/`,
      '--pid-file=',
      '--user=',
      '--log-facility=-',
    ],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  )
  const append = (d: Buffer) => {
    output.text += d.toString()
  }
  child.stdout?.on('data', append)
  child.stderr?.on('data', append)
  const exited = new Promise<void>((r) => child.once('exit', () => r()))
  const resolver = new Resolver({ timeout: 200, tries: 1 })
  resolver.setServers([`127.0.0.1:${port}`])
  const deadline = Date.now() + 10_000
  for (;;) {
    if (child.exitCode !== null || child.signalCode !== null) {
      if (/address already in use/i.test(output.text)) return undefined
      throw new Error(`dnsmasq exited at start: ${output.text.trim()}`)
    }
    if (await answers(resolver)) return child
    if (Date.now() > deadline) {
      child.kill('SIGKILL')
      await exited
      throw new Error(`dnsmasq did not answer on port ${port}: ${output.text.trim()}`)
    }
    await new Promise((r) => setTimeout(r, 50))
  }
}

/** Any DNS response (an unknown local name answers NXDOMAIN) means it is up. */
async function answers(resolver: Resolver): Promise<boolean> {
  try {
    await resolver.resolve4(`up.${TEST_DOMAIN}`)
    return true
  } catch (err) {
    return (err as { code?: string }).code === 'ENOTFOUND'
  }
}

function writeHosts(file: string, hosts: Record<string, readonly string[]>): void {
  const lines = Object.entries(hosts).flatMap(([name, addrs]) => addrs.map((a) => `${a} ${name}`))
  writeFileSync(file, lines.join('\n') + '\n')
}

function writeSrv(file: string, srv: Record<string, readonly SrvRecord[]>): void {
  const lines = Object.entries(srv).flatMap(([name, recs]) => recs.map((r) => `srv-host=${name},${r.target},${r.port}`))
  writeFileSync(file, lines.join('\n') + '\n')
}

function count(text: string, needle: string): number {
  return text.split(needle).length - 1
}

function freeUdpPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createSocket('udp4')
    s.once('error', reject)
    s.bind(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}
