import { pino } from 'pino'
import { loadConfigFile } from '../config/load.js'
import { ConfigError } from '../errors.js'
import { drainDelay } from '../lifecycle/drain-delay.js'
import { runSluice } from '../lifecycle/run.js'
import { requireConfigPath } from './args.js'
import { configErrorLine } from './validate.js'

/** `sluice serve --config FILE`: runs until SIGTERM/SIGINT, reloads on SIGHUP. Returns -1 while running. */
export async function runServe(args: string[]): Promise<number> {
  const path = requireConfigPath(args, 'serve')
  if (path === undefined) return 2
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
  const log = pino({ level: config.log.level, base: { pid: process.pid } }, pino.destination({ dest: 1, sync: true }))
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
  const onTerm = () => stop('SIGTERM')
  const onInt = () => stop('SIGINT')
  process.once('SIGTERM', onTerm)
  process.once('SIGINT', onInt)
  process.on('SIGHUP', reload)
  try {
    running = await runSluice(config, { log })
  } catch (err) {
    process.off('SIGTERM', onTerm)
    process.off('SIGINT', onInt)
    process.off('SIGHUP', reload)
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
