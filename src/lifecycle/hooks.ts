import type { Config } from '../config/load.js'
import type { Instance } from '../routing/instance.js'
import type { RoutingTable } from '../routing/table.js'

/**
 * What the core tells the features built around it (WebSockets, mirroring,
 * discovery). The core calls these and imports none of them; the assembly
 * (lifecycle/assemble.ts) registers each feature's hooks explicitly.
 */
export interface SluiceHooks {
  /** An instance stopped taking new work (drained, or its version drained). */
  onDrain?(instance: Instance): void
  /** After every routing table rebuild. */
  onTable?(table: RoutingTable): void
  /** The state is loaded and applied; the data listener opens next. */
  onLoaded?(): void
  /** After a reload applied a new config. */
  onConfig?(config: Config): void
}
