import { open, readFile, rename, stat, unlink } from 'node:fs/promises'
import { basename, dirname, join, resolve } from 'node:path'
import { z } from 'zod'
import { StateFileError } from '../errors.js'
import type { AuditEntry, DesiredState } from './desired.js'
import { auditEntrySchema, fileStateSchema } from './desired-schema.js'
import type { RolloutRecord } from './store.js'

/** Everything the embedded store keeps: what a restart must find again. */
export interface StoreSnapshot {
  state: DesiredState
  /** Oldest first, bounded by the store. */
  audit: AuditEntry[]
  /** Oldest first, bounded by the store. */
  rollouts: RolloutRecord[]
}

/** Bumped on a change an older sluice could not read; it then refuses the file by name. */
export const STATE_FILE_FORMAT = 1

const fileSchema = z.strictObject({
  format: z.literal(STATE_FILE_FORMAT),
  writtenAt: z.string(),
  state: fileStateSchema,
  audit: z.array(auditEntrySchema),
  rollouts: z.array(z.looseObject({ id: z.string() })),
})

/**
 * The embedded store's durable copy: one JSON file, replaced atomically on
 * every write (a temporary file in the same directory, fsync, rename, fsync
 * of the directory), so a crash at any moment leaves the previous or the new
 * content, never a torn file. Writes are serialised by the caller.
 */
export class StateFile {
  readonly path: string
  readonly #tmp: string
  readonly #dir: string

  constructor(path: string) {
    this.path = resolve(path)
    this.#dir = dirname(this.path)
    this.#tmp = join(this.#dir, `.${basename(this.path)}.tmp`)
  }

  /**
   * The saved snapshot, or undefined when the file does not exist (a first
   * start). Throws StateFileError, naming the problem, for anything else:
   * a missing directory, an unreadable file, bad JSON, a failed schema.
   */
  async load(): Promise<StoreSnapshot | undefined> {
    await this.#checkDirectory()
    let text: string
    try {
      text = await readFile(this.path, 'utf8')
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return undefined
      throw this.#error(`cannot read: ${reason(err)}`)
    }
    let raw: unknown
    try {
      raw = JSON.parse(text)
    } catch (err) {
      throw this.#error(`not valid JSON (${reason(err)}); move it away to start from the config`)
    }
    const format = (raw as { format?: unknown } | null)?.format
    if (format !== STATE_FILE_FORMAT) {
      throw this.#error(`format ${JSON.stringify(format)} is not ${STATE_FILE_FORMAT} (written by another sluice version?)`)
    }
    const parsed = fileSchema.safeParse(raw)
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!
      const at = issue.path.length > 0 ? issue.path.join('.') : '(top level)'
      throw this.#error(`invalid at ${at}: ${issue.message}`)
    }
    const { state, audit, rollouts } = parsed.data
    return { state, audit: audit as AuditEntry[], rollouts: rollouts as RolloutRecord[] }
  }

  /** Replaces the file with `snapshot`; resolves once it is on disk. Throws StateFileError. */
  async save(snapshot: StoreSnapshot): Promise<void> {
    const text = JSON.stringify({ format: STATE_FILE_FORMAT, writtenAt: new Date().toISOString(), ...snapshot })
    try {
      const fh = await open(this.#tmp, 'w', 0o600)
      try {
        await fh.writeFile(text, 'utf8')
        await fh.sync()
      } finally {
        await fh.close()
      }
      await rename(this.#tmp, this.path)
      await this.#syncDirectory()
    } catch (err) {
      await unlink(this.#tmp).catch(() => {})
      throw this.#error(`cannot write: ${reason(err)}`)
    }
  }

  /** A missing directory is a mistake (a typo, a volume not mounted), never created behind the operator's back. */
  async #checkDirectory(): Promise<void> {
    try {
      if (!(await stat(this.#dir)).isDirectory()) throw this.#error(`${this.#dir} is not a directory`)
    } catch (err) {
      if (err instanceof StateFileError) throw err
      if ((err as NodeJS.ErrnoException).code === 'ENOENT')
        throw this.#error(`directory ${this.#dir} does not exist (create it, or mount the volume)`)
      throw this.#error(`directory ${this.#dir}: ${reason(err)}`)
    }
  }

  /** The rename itself is durable only once the directory entry is. */
  async #syncDirectory(): Promise<void> {
    const dir = await open(this.#dir, 'r')
    try {
      await dir.sync()
    } catch (err) {
      // Some platforms and file systems cannot fsync a directory; the rename has happened.
      const code = (err as NodeJS.ErrnoException).code
      if (code !== 'EINVAL' && code !== 'EISDIR' && code !== 'EPERM') throw err
    } finally {
      await dir.close()
    }
  }

  #error(problem: string): StateFileError {
    return new StateFileError(this.path, problem)
  }
}

function reason(err: unknown): string {
  const e = err as NodeJS.ErrnoException
  const text = e instanceof Error ? e.message : String(err)
  // One line, for the one-line start error.
  return text.split('\n')[0]!
}
