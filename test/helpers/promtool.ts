import { spawn } from 'node:child_process'

/** Debian's `promtool` (the `prometheus` package), the checker the README names. */
export const PROMTOOL_BIN = process.env.SLUICE_PROMTOOL ?? '/usr/bin/promtool'

export interface PromtoolResult {
  code: number | null
  /** stdout and stderr together: promtool writes its findings to either. */
  output: string
}

/** Runs `promtool ARGS` with `input` on stdin; a missing binary rejects (the test fails, never skips). */
export function promtool(args: string[], input = '', cwd?: string): Promise<PromtoolResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(PROMTOOL_BIN, args, { cwd, stdio: ['pipe', 'pipe', 'pipe'] })
    let output = ''
    child.stdout.setEncoding('utf8').on('data', (d: string) => (output += d))
    child.stderr.setEncoding('utf8').on('data', (d: string) => (output += d))
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000)
    child.on('error', (err) => {
      clearTimeout(timer)
      reject(new Error(`cannot run ${PROMTOOL_BIN} (install Debian's prometheus package): ${err.message}`))
    })
    child.on('close', (code) => {
      clearTimeout(timer)
      resolve({ code, output })
    })
    child.stdin.on('error', () => {})
    child.stdin.end(input)
  })
}

/** Metric family names in Prometheus text (from `# TYPE` lines; a histogram's series share its family). */
export function familyNames(text: string): Set<string> {
  return new Set([...text.matchAll(/^# TYPE (\S+) \S+$/gm)].map((m) => m[1]!))
}

/** Every series name a scrape carries: family names plus a histogram's `_bucket`, `_sum`, `_count`. */
export function seriesNames(text: string): Set<string> {
  const names = new Set<string>()
  for (const m of text.matchAll(/^# TYPE (\S+) (\S+)$/gm)) {
    names.add(m[1]!)
    if (m[2] === 'histogram' || m[2] === 'summary') for (const s of ['_bucket', '_sum', '_count']) names.add(m[1]! + s)
  }
  return names
}
