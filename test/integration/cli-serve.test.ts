import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs'
import { createServer, type Server } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'
import { afterAll, beforeAll, describe, expect, it } from 'vitest'
import { buildOnce, runCli, startServe } from '../helpers/cli.js'
import { startUpstream, type TestUpstream } from '../helpers/upstream.js'

describe('sluice serve', () => {
  let dir: string
  let blue: TestUpstream

  beforeAll(async () => {
    await buildOnce()
    dir = mkdtempSync(join(tmpdir(), 'sluice-serve-'))
    blue = await startUpstream('blue')
  }, 180_000)
  afterAll(async () => {
    await blue.close()
    rmSync(dir, { recursive: true, force: true })
  })

  function writeConfig(name: string, listenPort: number, logLevel = 'info'): string {
    const file = join(dir, name)
    writeFileSync(
      file,
      [
        'listen: { host: 127.0.0.1, port: ' + listenPort + ' }',
        'admin:',
        '  host: 127.0.0.1',
        '  port: 0',
        '  token: ${TOKEN}',
        'versions:',
        '  blue:',
        '    instances:',
        `      - url: ${blue.url}`,
        `log: { level: ${logLevel} }`,
        '',
      ].join('\n'),
    )
    return file
  }

  it.each(['SIGTERM', 'SIGINT'] as const)(
    'logs "listening" with both bound ports, proxies, and exits 0 on %s',
    async (signal) => {
      const proc = await startServe(writeConfig(`ok-${signal}.yaml`, 0), { TOKEN: 't' })
      try {
        expect(proc.port).toBeGreaterThan(0)
        expect(proc.adminPort).toBeGreaterThan(0)
        expect(proc.adminPort).not.toBe(proc.port)
        const res = await fetch(`${proc.url}/hello`)
        expect(res.status).toBe(200)
        expect(await res.json()).toEqual({ name: 'blue', method: 'GET', url: '/hello' })
        const ready = await fetch(`http://127.0.0.1:${proc.adminPort}/readyz`)
        expect(ready.status).toBe(200)
        await ready.text()
      } finally {
        expect(await proc.stop(signal)).toBe(0)
      }
      // Every stdout line is a JSON log line.
      for (const line of proc.lines) if (line !== '') expect(() => JSON.parse(line)).not.toThrow()
      expect(proc.stderr()).toBe('')
    },
  )

  it.each(['warn', 'silent'])('logs the "listening" line with log.level %s too', async (level) => {
    const proc = await startServe(writeConfig(`quiet-${level}.yaml`, 0, level), { TOKEN: 't' })
    try {
      const listening = proc.lines.map((l) => JSON.parse(l)).filter((e) => e.msg === 'listening')
      expect(listening).toHaveLength(1)
      expect(listening[0]).toMatchObject({ port: proc.port, adminPort: proc.adminPort })
      expect((await fetch(`${proc.url}/`)).status).toBe(200)
    } finally {
      expect(await proc.stop()).toBe(0)
    }
  })

  it('reloads its config on SIGHUP, and keeps the old one when the file turns invalid', async () => {
    const green = await startUpstream('green')
    const file = writeConfig('hup.yaml', 0)
    const proc = await startServe(file, { TOKEN: 't' })
    const state = async () =>
      (await (
        await fetch(`http://127.0.0.1:${proc.adminPort}/v1/state`, { headers: { authorization: 'Bearer t' } })
      ).json()) as any
    try {
      const withGreen = `${readFileSync(file, 'utf8')}`.replace(
        'log:',
        `  green:\n    instances:\n      - url: ${green.url}\nweights: { blue: 0, green: 100 }\nlog:`,
      )
      writeFileSync(file, withGreen)
      proc.child.kill('SIGHUP')
      await expect.poll(async () => (await state()).weights.green, { message: 'the reload on SIGHUP' }).toBe(100)
      const res = await fetch(`${proc.url}/`)
      expect(((await res.json()) as any).name).toBe('green')

      writeFileSync(file, 'versions: {}\nbogus: 1\n')
      proc.child.kill('SIGHUP')
      await expect
        .poll(() => proc.lines.some((l) => l.includes('reload on SIGHUP failed')), {
          message: 'the refused reload logged',
        })
        .toBeTruthy()
      expect((await state()).weights).toEqual({ blue: 0, green: 100 })
      expect((await fetch(`${proc.url}/`)).status).toBe(200)
    } finally {
      expect(await proc.stop()).toBe(0)
      await green.close()
    }
  })

  it('still exits 0 on SIGTERM after the reader of its stdout went away', async () => {
    const proc = await startServe(writeConfig('epipe.yaml', 0), { TOKEN: 't' })
    // A log shipper that died: the pipe's read end is gone, every later write is EPIPE.
    proc.child.stdout?.destroy()
    proc.child.stderr?.destroy()
    expect((await fetch(`${proc.url}/`)).status).toBe(200)
    expect(await proc.stop('SIGTERM', 10_000)).toBe(0)
  })

  it('a listener that cannot bind is a failed start: exit 1 with one line on stderr', async () => {
    const taken: Server = createServer()
    await new Promise<void>((r) => taken.listen(0, '127.0.0.1', r))
    const port = (taken.address() as { port: number }).port
    try {
      const r = await runCli(['serve', '--config', writeConfig('taken.yaml', port)], { TOKEN: 't' })
      expect(r.code).toBe(1)
      expect(r.stderr).toMatch(
        new RegExp(`^start failed: listen EADDRINUSE: address already in use 127\\.0\\.0\\.1:${port}\\n$`),
      )
    } finally {
      await new Promise((r) => taken.close(r))
    }
  })
})
