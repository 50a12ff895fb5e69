import { type ChildProcess, execFile, spawn } from 'node:child_process'
import { chmodSync, existsSync, readdirSync, statSync } from 'node:fs'
import { join } from 'node:path'
import { fileURLToPath } from 'node:url'
import { runCtl } from '../../src/cli/ctl.js'
import type { CliIo } from '../../src/cli/io.js'

export const ROOT = fileURLToPath(new URL('../..', import.meta.url))
export const MAIN = `${ROOT}dist/cli/main.js`

let built: Promise<void> | undefined

/**
 * Compiles src/ to dist/ once per test process (skipped when dist is newer
 * than every source file), so CLI tests run what `npx sluice` runs. tsc
 * emits even when some file has a type error (the typecheck step reports
 * those); only a missing entry point fails here.
 */
export function buildOnce(): Promise<void> {
  built ??= upToDate()
    ? Promise.resolve()
    : new Promise<void>((resolve, reject) => {
        const tsc = `${ROOT}node_modules/typescript/bin/tsc`
        execFile(
          process.execPath,
          [tsc, '-p', 'tsconfig.build.json'],
          { cwd: ROOT, timeout: 180_000 },
          (err, stdout) => {
            if (!existsSync(MAIN)) {
              reject(new Error(`build failed: ${err?.message ?? ''}\n${stdout}`))
              return
            }
            // As `npm run build` leaves it: npx runs the file itself.
            chmodSync(MAIN, 0o755)
            resolve()
          },
        )
      })
  return built
}

function upToDate(): boolean {
  if (!existsSync(MAIN)) return false
  const builtAt = statSync(MAIN).mtimeMs
  const newest = (dir: string): number =>
    readdirSync(dir, { withFileTypes: true }).reduce((m, e) => {
      const p = join(dir, e.name)
      return Math.max(m, e.isDirectory() ? newest(p) : statSync(p).mtimeMs)
    }, 0)
  return newest(`${ROOT}src`) < builtAt
}

export interface CliResult {
  code: number | null
  signal: NodeJS.Signals | null
  stdout: string
  stderr: string
}

/** Runs `sluice ARGS` to its end (bounded by `timeoutMs`), with `env` added to this process's environment. */
export function runCli(
  args: string[],
  env: Record<string, string | undefined> = {},
  timeoutMs = 20_000,
): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], { cwd: ROOT, env: { ...process.env, ...env } })
    let stdout = ''
    let stderr = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    const timer = setTimeout(() => {
      child.kill('SIGKILL')
      reject(
        new Error(`sluice ${args.join(' ')} still running after ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`),
      )
    }, timeoutMs)
    child.on('error', reject)
    child.on('close', (code, signal) => {
      clearTimeout(timer)
      resolve({ code, signal, stdout, stderr })
    })
  })
}

export interface ServeProcess {
  readonly child: ChildProcess
  readonly pid: number
  readonly port: number
  readonly adminPort: number
  readonly url: string
  /** Every stdout line so far (JSON log lines). */
  readonly lines: string[]
  stderr(): string
  /** Sends `signal` and resolves with the exit code (SIGKILL after `timeoutMs`). */
  stop(signal?: NodeJS.Signals, timeoutMs?: number): Promise<number | null>
}

/** Starts `sluice serve --config FILE` and resolves once it logs "listening" with its ports. */
export function startServe(
  configFile: string,
  env: Record<string, string | undefined> = {},
  args: string[] = [],
): Promise<ServeProcess> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, 'serve', '--config', configFile, ...args], {
      cwd: ROOT,
      env: { ...process.env, ...env },
    })
    const lines: string[] = []
    let partial = ''
    let stderr = ''
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)))
    const fail = (why: string) => {
      child.kill('SIGKILL')
      reject(new Error(`${why}\nstdout: ${lines.join('\n')}\nstderr: ${stderr}`))
    }
    const timer = setTimeout(() => fail('sluice serve did not log "listening" within 20 s'), 20_000)
    child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr += d))
    child.on('exit', (code) => {
      clearTimeout(timer)
      reject(new Error(`sluice serve exited with ${code} before listening\nstderr: ${stderr}`))
    })
    child.stdout.setEncoding('utf8').on('data', (d: string) => {
      partial += d
      let nl = partial.indexOf('\n')
      while (nl !== -1) {
        const line = partial.slice(0, nl)
        partial = partial.slice(nl + 1)
        lines.push(line)
        nl = partial.indexOf('\n')
        let entry: { msg?: string; port?: number; adminPort?: number }
        try {
          entry = JSON.parse(line)
        } catch {
          continue
        }
        if (entry.msg !== 'listening') continue
        clearTimeout(timer)
        const port = entry.port!
        resolve({
          child,
          pid: child.pid!,
          port,
          adminPort: entry.adminPort!,
          url: `http://127.0.0.1:${port}`,
          lines,
          stderr: () => stderr,
          async stop(signal = 'SIGTERM', timeoutMs = 15_000) {
            if (child.exitCode !== null || child.signalCode !== null) return child.exitCode
            const kill = setTimeout(() => child.kill('SIGKILL'), timeoutMs)
            child.kill(signal)
            const code = await exited
            clearTimeout(kill)
            return code
          },
        })
      }
    })
  })
}

/**
 * A CLI command run in this process, its output captured, with `env` over
 * this process's environment: the command's own code without a Node start
 * per call. The process boundary (exit codes, argv, the shebang) is tested
 * by the tests that spawn the built CLI.
 */
export async function inProcess(
  run: (io: CliIo) => Promise<number>,
  env: Record<string, string | undefined> = {},
): Promise<Omit<CliResult, 'signal'>> {
  let stdout = ''
  let stderr = ''
  const code = await run({
    env: { ...process.env, ...env },
    stdout: (t) => void (stdout += t),
    stderr: (t) => void (stderr += t),
  })
  return { code, stdout, stderr }
}

/** `sluice ctl ARGV` in this process, against the admin API that `env` names. */
export const ctlInProcess = (argv: string[], env: Record<string, string>) => inProcess((io) => runCtl(argv, io), env)
