/** Where a command reads its environment and writes; tests pass their own to run commands in-process. */
export interface CliIo {
  readonly env: NodeJS.ProcessEnv
  /** Receives whole lines, each ending in "\n" (like `process.stdout.write`). */
  stdout(text: string): void
  stderr(text: string): void
}

export const processIo: CliIo = {
  env: process.env,
  stdout: (s) => process.stdout.write(s),
  stderr: (s) => process.stderr.write(s),
}
