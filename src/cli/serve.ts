import { pino } from 'pino'
import { loadConfigFile } from '../config/load.js'
import { ConfigError } from '../errors.js'
import { drainDelay } from '../lifecycle/drain-delay.js'
import { runSluice } from '../lifecycle/run.js'
import { workerCount } from '../lifecycle/worker-pool.js'
import { type FlagSpec, requireConfigPath, scanArgs } from './args.js'
import { logOptions } from './log.js'
import { configErrorLine } from './validate.js'

const WORKERS_FLAG: Readonly<Record<string, FlagSpec>> = {
  workers: { type: 'string', value: 'a count or "auto"' },
}

/** `--workers N|auto`; null after printing the usage error. */
function workersFlag(args: string[]): number | 'auto' | undefined | null {
  const scanned = scanArgs(args, { config: { type: 'string', short: 'c' }, ...WORKERS_FLAG })
  const raw = scanned.ok ? scanned.flags['workers'] : undefined
  if (raw === undefined || raw === 'auto') return raw
  const n = Number(raw)
  if (Number.isInteger(n) && n >= 1) return n
  process.stderr.write(`--workers needs a count of 1 or more or "auto", not "${String(raw)}"\nusage: sluice serve --config FILE [--workers N|auto]\n`)
  return null
}

/**
 * `sluice serve --config FILE [--workers N|auto]`: runs until SIGTERM/SIGINT,
 * reloads on SIGHUP, upgrades its workers on SIGUSR2. Returns -1 while running.
 */
export async function runServe(args: string[]): Promise<number> {
  const path = requireConfigPath(args, 'serve', undefined, WORKERS_FLAG)
  if (path === undefined) return 2
  const flagWorkers = workersFlag(args)
  if (flagWorkers === null) return 2
  let config: Awaited<ReturnType<typeof loadConfigFile>>
  try {
    config = await loadConfigFile(path)
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err
    process.stderr.write(configErrorLine(err))
    return 1
  }
  // Synchronous stdout: with the asynchronous default, a log reader that went
  // away (EPIPE) left pino's exit-time flush retrying forever, so a SIGTERM
  // never ended the process. Lifecycle logs are few; the access log is opt-in.
  const log = pino(logOptions(config.log.level), pino.destination({ dest: 1, sync: true }))
  if (!config.redis && config.state.file === undefined) {
    log.warn('state is in memory only: runtime changes (weights, drains, rollouts) are lost on restart; set state.file')
  }
  // Signals are handled from before the "listening" line: a script that reacts
  // to that line at once must never meet Node's default (exit) for SIGHUP.
  let running: Awaited<ReturnType<typeof runSluice>> | undefined
  let early: 'reload' | NodeJS.Signals | undefined
  const stop = (signal: NodeJS.Signals) => {
    if (!running) {
      early = signal
      return
    }
    log.info({ signal }, 'graceful stop')
    const r = running
    if (r.sluice.config.drain.delayMs > 0) r.pool?.beginStopping()
    drainDelay(r.sluice, log).then(() => r.stop()).then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'stop failed')
        process.exit(1)
      },
    )
  }
  const reload = () => {
    if (!running) {
      early ??= 'reload'
      return
    }
    running.sluice.reload({ source: 'reload', actor: 'SIGHUP' }).then(
      () => log.info('reloaded on SIGHUP'),
      (err: unknown) =>
        log.error(
          { problems: err instanceof ConfigError ? err.problems : undefined, err },
          'reload on SIGHUP failed: keeping the old config',
        ),
    )
  }
  // Self-upgrade (README "Workers and self-upgrade"); without workers there is no primary to hand over.
  const restart = () => {
    const pool = running?.pool
    if (pool === undefined) {
      log.warn('SIGUSR2: self-upgrade needs workers (`workers` in the config or `serve --workers`): ignored')
      return
    }
    pool.restart({ source: 'signal', actor: 'SIGUSR2' }).catch((err: unknown) =>
      log.error(
        { problems: err instanceof ConfigError ? err.problems : undefined, err },
        'restart on SIGUSR2 refused: nothing changed',
      ),
    )
  }
  const onTerm = () => stop('SIGTERM')
  const onInt = () => stop('SIGINT')
  process.once('SIGTERM', onTerm)
  process.once('SIGINT', onInt)
  process.on('SIGHUP', reload)
  process.on('SIGUSR2', restart)
  const workers = flagWorkers ?? config.workers
  try {
    running = await runSluice(config, { log, ...(workers !== undefined && { workers: workerCount(workers) }) })
  } catch (err) {
    process.off('SIGTERM', onTerm)
    process.off('SIGINT', onInt)
    process.off('SIGHUP', reload)
    process.off('SIGUSR2', restart)
    process.stderr.write(`start failed: ${err instanceof Error ? err.message : String(err)}\n`)
    return 1
  }
  if (!log.isLevelEnabled('info')) {
    // Scripts read the bound ports from this line (README, Run it): it is written whatever log.level says.
    log.child({}, { level: 'info' }).info({ port: running.port, adminPort: running.adminPort }, 'listening')
  }
  if (early === 'reload') reload()
  else if (early !== undefined) stop(early)
  return -1
}
