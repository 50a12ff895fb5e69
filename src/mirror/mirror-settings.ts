import type { z } from 'zod'
import type { mirrorSchema } from '../config/schema.js'
import type { MirrorSection, Same } from '../state/types.js'
import { parsePointer } from './json-pointer.js'

export type { MirrorSection } from '../state/types.js'

// Compile-time guard: the schema reads back exactly the shared state's type.
const schemaMatchesSection: Same<z.output<typeof mirrorSchema>, MirrorSection> = true
void schemaMatchesSection

/**
 * Response headers never compared (hop-by-hop ones are stripped before):
 * content-length is covered by the body digest (and differs legitimately
 * when an ignored JSON field differs in length), date and age differ between
 * any two answers.
 */
const ALWAYS_IGNORED = ['content-length', 'date', 'age']

/** A `mirror` section compiled for the data path: sets and parsed pointers instead of lists and strings. */
export interface MirrorSettings {
  readonly section: MirrorSection
  readonly version: string
  readonly percent: number
  readonly methods: ReadonlySet<string>
  readonly compare: boolean
  /** Lower-cased header names left out of the comparison (configured plus ALWAYS_IGNORED). */
  readonly ignoreHeaders: ReadonlySet<string>
  /** Parsed JSON pointers left out of JSON body comparison. */
  readonly pointers: readonly (readonly string[])[]
  readonly timeoutMs: number
  readonly maxInflight: number
  readonly maxBodyBytes: number
}

export function compileMirror(section: MirrorSection): MirrorSettings {
  const ignoreHeaders = new Set(ALWAYS_IGNORED)
  const pointers: string[][] = []
  for (const key of section.ignore) {
    if (key.startsWith('/')) pointers.push(parsePointer(key))
    else ignoreHeaders.add(key.toLowerCase())
  }
  return {
    section,
    version: section.version,
    percent: section.percent,
    methods: new Set(section.methods),
    compare: section.compare,
    ignoreHeaders,
    pointers,
    timeoutMs: section.timeoutMs,
    maxInflight: section.maxInflight,
    maxBodyBytes: section.maxBodyBytes,
  }
}
