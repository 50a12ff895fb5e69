import { buildOnce } from './cli.js'

/**
 * Compiles dist/ once, in vitest's main process, before any integration file
 * starts: two workers that found dist stale would otherwise run tsc into the
 * same directory at once while the other's processes read it.
 */
export default async function setup(): Promise<void> {
  await buildOnce()
}
