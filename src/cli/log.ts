import { pino } from 'pino'

/**
 * The proxy's pino options (README "Logs"): pino's JSON lines with `time` as
 * an ISO 8601 UTC string rather than epoch milliseconds, so that a person
 * reading `kubectl logs` and a log shipper both read it as it is. It costs
 * one Date per line, and the per-request access log is opt-in.
 */
export function logOptions(level: string): pino.LoggerOptions {
  return { level, base: { pid: process.pid }, timestamp: pino.stdTimeFunctions.isoTime }
}
