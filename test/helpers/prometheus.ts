import { type ChildProcess, spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:http'
import type { AddressInfo } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { freePort } from './redis-server.js'
import { vi } from 'vitest'

export const PROMETHEUS_BIN = process.env.SLUICE_PROMETHEUS ?? '/usr/bin/prometheus'

/** A tiny exporter whose samples the test sets: `set('checkout_conversion{version="green"}', 0.97)`. */
export interface TestExporter {
  readonly url: string
  set(series: string, value: number): void
  delete(series: string): void
  close(): Promise<void>
}

export async function startExporter(): Promise<TestExporter> {
  const samples = new Map<string, number>()
  const server: Server = createServer((req, res) => {
    req.resume()
    const lines = [...samples].map(([k, v]) => `${k} ${v}`)
    res.writeHead(200, { 'content-type': 'text/plain; version=0.0.4' })
    res.end(lines.join('\n') + '\n')
  })
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r))
  const port = (server.address() as AddressInfo).port
  return {
    url: `http://127.0.0.1:${port}`,
    set: (series, value) => void samples.set(series, value),
    delete: (series) => void samples.delete(series),
    close: () =>
      new Promise((r) => {
        server.closeAllConnections()
        server.close(() => r())
      }),
  }
}

export interface TestPrometheus {
  readonly url: string
  /** One instant query's sample values (for waiting until a scrape landed). */
  values(query: string): Promise<number[]>
  stop(): Promise<void>
}

/**
 * Starts Debian's real `prometheus` on a free loopback port with a temporary
 * TSDB, scraping `targetUrl` every second. Throws when prometheus is not
 * installed (apt-get install -y prometheus): these tests never skip. It is
 * the test's own process, never the system service.
 */
export async function startPrometheus(targetUrl: string): Promise<TestPrometheus> {
  const found = spawnSync(PROMETHEUS_BIN, ['--version'], { encoding: 'utf8' })
  if (found.error || found.status !== 0) {
    throw new Error(
      `prometheus is not installed at ${PROMETHEUS_BIN} (apt-get install -y prometheus): the rollout gate tests need a real one`,
    )
  }
  const dir = mkdtempSync(join(tmpdir(), 'sluice-prometheus-'))
  const target = new URL(targetUrl)
  writeFileSync(
    join(dir, 'prometheus.yml'),
    [
      'global:',
      '  scrape_interval: 1s',
      '  scrape_timeout: 1s',
      '  evaluation_interval: 1s',
      'scrape_configs:',
      '  - job_name: test',
      `    static_configs: [{ targets: ["${target.host}"] }]`,
      '',
    ].join('\n'),
  )
  let child: ChildProcess | undefined
  let url = ''
  let output = ''
  for (let attempt = 0; attempt < 5 && !child; attempt++) {
    const port = await freePort()
    const p = spawn(
      PROMETHEUS_BIN,
      [
        `--config.file=${join(dir, 'prometheus.yml')}`,
        `--storage.tsdb.path=${join(dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${port}`,
        '--storage.tsdb.retention.time=1h',
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    )
    p.stdout!.on('data', (d: Buffer) => (output += d.toString()))
    p.stderr!.on('data', (d: Buffer) => (output += d.toString()))
    const exited = new Promise<false>((r) => p.once('exit', () => r(false)))
    const ready = vi
      .waitFor(
        async () => {
          if (!(await fetch(`http://127.0.0.1:${port}/-/ready`)).ok) throw new Error('prometheus not ready')
        },
        { timeout: 20_000, interval: 100 },
      )
      .then(() => true)
    if (await Promise.race([ready, exited])) {
      child = p
      url = `http://127.0.0.1:${port}`
    } else {
      await ready.catch(() => undefined)
    }
  }
  if (!child) {
    rmSync(dir, { recursive: true, force: true })
    throw new Error(`prometheus did not start:\n${output}`)
  }
  const running = child
  const values = async (query: string) => {
    const res = await fetch(`${url}/api/v1/query?query=${encodeURIComponent(query)}`)
    const body = (await res.json()) as { data: { result: { value: [number, string] }[] } }
    return body.data.result.map((r) => Number(r.value[1]))
  }
  return {
    url,
    values,
    stop: async () => {
      if (running.exitCode === null) {
        const gone = new Promise((r) => running.once('exit', r))
        running.kill('SIGTERM')
        await gone
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}
