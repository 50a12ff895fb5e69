import { type IncomingMessage, ServerResponse } from 'node:http'
import type { Socket } from 'node:net'
import { performance } from 'node:perf_hooks'
import type { Duplex } from 'node:stream'
import type { Logger } from 'pino'
import { type ServerOptions, WebSocketServer } from 'ws'
import {
  NoUsableInstanceError,
  ShuttingDownError,
  UpstreamFailedError,
  UpstreamTimeoutError,
  WebSocketHandshakeError,
} from '../errors.js'
import type { Config } from '../config/load.js'
import type { SluiceHooks } from '../lifecycle/hooks.js'
import type { Outcomes } from '../lifecycle/outcomes.js'
import type { Metrics } from '../metrics/metrics.js'
import { closeWhenSilent, endConnection, keepWhenSilent, readReleased, writeOwnAnswer } from '../proxy/client-socket.js'
import { afterAnswers, CLIENT_CLOSED, type ForwardContext } from '../proxy/forward.js'
import type { ProxyListener } from '../proxy/listener.js'
import { requestIdOf } from '../proxy/request-id.js'
import type { Instance } from '../routing/instance.js'
import type { RoutingTable, VersionRoute } from '../routing/table.js'
import type { Handshake, WsConnection } from './connection.js'
import {
  handshakeProblem,
  offeredProtocols,
  passRefusal,
  refuseHandshake,
  relayHeaders,
  relayHeadersFrom,
  tunnelHeaders,
  withRequestId,
} from './handshake.js'
import { type RelayHost, RelaySession } from './relay-session.js'
import { RelaySide } from './relay-side.js'
import { dropClearedTimer } from './socket-timer.js'
import { TunnelConnection } from './tunnel-connection.js'
import {
  type Attempt,
  type Failed,
  openRelayUpstream,
  openTunnelUpstream,
  type RelayOutcome,
  type RelayUpstreamOptions,
} from './upstream-connect.js'

const kProtocol = Symbol('sluice.ws-protocol')
const kPassed = Symbol('sluice.ws-passed-headers')
type UpgradeRequest = IncomingMessage & { [kProtocol]?: string; [kPassed]?: string[] }

type WebSocketConfig = Config['websocket']

/** What the gateway needs of a proxy (the core has all of it). `config` is read on every use: a reload replaces it. */
export interface GatewayHost {
  readonly config: Pick<Config, 'websocket' | 'drain' | 'timeouts' | 'retries'>
  readonly log: Logger
  readonly routing: { readonly table: RoutingTable }
  readonly metrics: Pick<Metrics, 'handoffs'>
  readonly outcomes: Pick<Outcomes, 'end' | 'tryFailed' | 'unrouted'>
  readonly forwardContext: Pick<ForwardContext, 'proto' | 'requestIdHeader'>
  readonly listener: Pick<ProxyListener, 'server'>
}

/** One upgrade on its way to an upstream. */
interface Upgrade {
  readonly req: IncomingMessage
  readonly socket: Duplex
  readonly head: Buffer
  readonly table: RoutingTable
  readonly route: VersionRoute
  readonly first: Instance
  readonly handshake: Handshake
}

/** Idle sweeps run every idleTimeoutMs/2; a connection silent for more than two of them is idle. */
const IDLE_TICKS = 2

/**
 * WebSockets through sluice: upgrades routed like requests (overrides,
 * sticky key, weights, usable set), relayed message by message or tunnelled
 * (websocket.mode), moved off instances that routing no longer wants
 * (websocket.onDrain: handoff, or closed with 1012), closed with 1001 on a
 * graceful stop, and counted per instance and version.
 *
 * The upstream is reached first: only when it has accepted is the client's
 * handshake completed, with the subprotocol the upstream chose; a refusal
 * reaches the client with the upstream's status and body.
 */
export class WebSocketGateway implements SluiceHooks, RelayHost {
  readonly #sluice: GatewayHost
  readonly #byInstance = new Map<Instance, Set<WsConnection>>()
  #open = 0
  #stopping = false
  #server: WebSocketServer | undefined
  #serverFor: WebSocketConfig | undefined
  #sweep: NodeJS.Timeout | undefined
  #sweepMs = 0

  /** The assembly hands the listener's upgrades to `upgrade` and registers this object's hooks. */
  constructor(sluice: GatewayHost) {
    this.#sluice = sluice
    const ws = sluice.config.websocket
    if (ws.mode === 'tunnel' && ws.onDrain === 'handoff')
      sluice.log.info('websocket.mode tunnel does not hand off: a draining instance closes its WebSockets with 1012')
  }

  /** Open client WebSockets. */
  get connections(): number {
    return this.#open
  }

  /** Bytes held in the proxy for all WebSockets (bounded by backpressure; for tests and diagnostics). */
  get buffered(): number {
    let n = 0
    for (const set of this.#byInstance.values()) for (const c of set) n += c.buffered
    return n
  }

  get #config(): WebSocketConfig {
    return this.#sluice.config.websocket
  }
  get highWaterMark(): number {
    return this.#config.highWaterMark
  }
  get handoffTimeoutMs(): number {
    return this.#config.handoffTimeoutMs
  }
  get drainPolicy(): 'handoff' | 'close' {
    return this.#config.onDrain
  }
  get log(): Logger {
    return this.#sluice.log
  }

  // ---- hooks ----

  onTable(table: RoutingTable): void {
    for (const [instance, set] of this.#byInstance) this.#review(instance, set, table)
  }

  onDrain(instance: Instance): void {
    const set = this.#byInstance.get(instance)
    if (set !== undefined) this.#review(instance, set, this.#sluice.routing.table)
  }

  /**
   * 1001 to every client. The listener's graceful close then waits for these
   * sockets like for any other connection; whatever is still open at
   * drain.timeoutMs is cut.
   */
  stop(): void {
    this.#stopping = true
    clearInterval(this.#sweep)
    for (const set of this.#byInstance.values()) for (const c of set) c.shut(1001, 'proxy stopping')
    if (this.#open === 0) return
    setTimeout(() => {
      for (const set of this.#byInstance.values()) for (const c of set) c.kill()
    }, this.#sluice.config.drain.timeoutMs).unref()
  }

  // ---- RelayHost ----

  route(c: WsConnection, failed: Instance | undefined): Instance | undefined {
    const table = this.#sluice.routing.table
    const h = c.handshake
    const route = table.chooseVersion(h.request, h.key)
    if (route === undefined) return undefined
    return failed === undefined ? table.chooseInstance(route, h.key) : table.chooseRetry(route, h.key, failed)
  }

  open(s: RelaySession, to: Instance): Attempt<RelayOutcome> {
    const h = s.handshake
    const ctx = this.#sluice.forwardContext
    const headers = relayHeadersFrom(h.request, s.clientAddress, ctx.proto, ctx.requestIdHeader, h.requestId)
    return openRelayUpstream(to.url + h.path, headers, h.protocol === '' ? [] : [h.protocol], this.#relayOptions())
  }

  mustMove(c: WsConnection): boolean {
    const table = this.#sluice.routing.table
    const verdict = instanceVerdict(c.instance, table)
    return verdict === 'move' || (verdict === 'check' && routedElsewhere(c, table))
  }

  moved(c: WsConnection, from: Instance, to: Instance): void {
    this.#remove(c, from)
    this.#add(c, to)
    this.#sluice.metrics.handoffs.labels(from.version.name).inc()
  }

  ended(c: WsConnection): void {
    this.#remove(c, c.instance)
    this.#open--
  }

  // ---- upgrades ----

  /** The listener's `upgrade` event. */
  upgrade(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    socket.on('error', ignore)
    readReleased(socket)
    closeWhenSilent(socket)
    // Pipelined behind requests still being answered, it waits for their answers.
    afterAnswers(socket, () => this.#upgradeNow(req, socket, head))
  }

  #upgradeNow(req: IncomingMessage, socket: Duplex, head: Buffer): void {
    if (req.headers.upgrade?.toLowerCase() !== 'websocket') {
      this.#asRequest(req, socket)
      return
    }
    const refusal = this.#stopping ? new ShuttingDownError() : handshakeProblem(req)
    if (refusal !== undefined) {
      refuseHandshake(socket, refusal)
      return
    }
    const table = this.#sluice.routing.table
    const key = table.keyOf(req.headers)
    const route = table.chooseVersion(req.headers, key)
    const instance = route === undefined ? undefined : table.chooseInstance(route, key)
    if (route === undefined || instance === undefined) {
      this.#sluice.outcomes.unrouted(503)
      writeOwnAnswer(socket, new NoUsableInstanceError())
      return
    }
    const handshake: Handshake = { path: req.url ?? '/', request: req.headers, key }
    const u: Upgrade = { req, socket, head, table, route, first: instance, handshake }
    ;(this.#config.mode === 'tunnel' ? this.#tunnel(u) : this.#relay(u)).catch((err: unknown) => {
      this.log.error({ err }, 'websocket upgrade failed')
      socket.destroy()
    })
  }

  /**
   * Once an 'upgrade' listener exists, node:http hands it every request that
   * offers an upgrade. One to anything but WebSocket (h2c from curl --http2,
   * say) is an ordinary request whose offer is declined: it takes the HTTP
   * data path, and its connection closes after the response (node's parser
   * has already let go of the socket).
   */
  #asRequest(req: IncomingMessage, socket: Duplex): void {
    const h = req.headers
    if ((h['content-length'] !== undefined && h['content-length'] !== '0') || h['transfer-encoding'] !== undefined) {
      writeOwnAnswer(socket, new WebSocketHandshakeError(400, `cannot proxy a body with an upgrade to "${h.upgrade}"`))
      return
    }
    const res = new ServerResponse(req)
    res.shouldKeepAlive = false
    res.assignSocket(socket as Socket)
    res.once('finish', () => {
      res.detachSocket(socket as Socket)
      endConnection(socket)
    })
    this.#sluice.listener.server.emit('request', req, res)
  }

  /** The handshake carries a request ID upstream as every request does (README "Request IDs"). */
  #requestId(req: IncomingMessage): [proto: string, idName: string, id: string] {
    const ctx = this.#sluice.forwardContext
    return [ctx.proto, ctx.requestIdHeader, requestIdOf(req.headers[ctx.requestIdHeader])]
  }

  async #relay(u: Upgrade): Promise<void> {
    const { req, socket, head, handshake } = u
    const ids = this.#requestId(req)
    const headers = relayHeaders(req, ...ids)
    const offer = offeredProtocols(req)
    const options = this.#relayOptions()
    const reached = await this.#reach(u, (i) => openRelayUpstream(i.url + handshake.path, headers, offer, options))
    if (reached === undefined) return
    const { instance, outcome: o, ms } = reached
    const outcomes = this.#sluice.outcomes
    if (o.kind === 'refused') {
      outcomes.end(instance, o.res.statusCode ?? 0, ms, false)
      o.res.once('close', () => o.ws.terminate())
      passRefusal(socket, o.res)
      return
    }
    const unwanted = this.#unwanted(socket, () => o.ws.close(1001, 'proxy stopping'))
    if (unwanted !== 0) {
      outcomes.end(instance, unwanted, ms, false)
      return
    }
    const r = req as UpgradeRequest
    r[kProtocol] = o.protocol
    r[kPassed] = withRequestId(o.headers, ids[1], ids[2])
    let session: RelaySession | undefined
    this.#clientServer().handleUpgrade(req, socket, head, (client) => {
      const h = { path: handshake.path, request: handshake.request, key: handshake.key, requestId: ids[2], protocol: o.protocol }
      session = new RelaySession(this, client as RelaySide, o.ws, instance, h)
      this.#track(session, instance)
      // ws listens for errors on the socket now; a second listener would cost every idle connection.
      socket.off('error', ignore)
      keepWhenSilent(socket)
      dropClearedTimer(socket as Socket)
    })
    // ws answered the client itself (a malformed extension or protocol header): let the upstream go.
    if (session === undefined) o.ws.close(1001)
    outcomes.end(instance, session === undefined ? 400 : 101, ms, false)
  }

  async #tunnel(u: Upgrade): Promise<void> {
    const { req, socket, head, handshake } = u
    const ids = this.#requestId(req)
    const headers = tunnelHeaders(req, ...ids)
    const t = this.#sluice.config.timeouts
    const bounds = { connectMs: t.connectMs, upstreamMs: t.upstreamMs }
    const reached = await this.#reach(u, (i) => openTunnelUpstream(i.url, handshake.path, headers, bounds))
    if (reached === undefined) return
    const { instance, outcome: o, ms } = reached
    const outcomes = this.#sluice.outcomes
    if (o.kind === 'refused') {
      outcomes.end(instance, o.res.statusCode ?? 0, ms, false)
      passRefusal(socket, o.res)
      return
    }
    const unwanted = this.#unwanted(socket, () => o.socket.destroy())
    if (unwanted !== 0) {
      outcomes.end(instance, unwanted, ms, false)
      return
    }
    // The upstream's 101 goes to the client as it is (the two ends negotiated with each other), with the request ID.
    const raw = o.res.rawHeaders
    const lines: string[] = []
    for (let i = 0; i < raw.length; i += 2) lines.push(`${raw[i]}: ${raw[i + 1]}`)
    let text = `HTTP/1.1 101 ${o.res.statusMessage || 'Switching Protocols'}\r\n`
    for (const line of withRequestId(lines, ids[1], ids[2])) text += `${line}\r\n`
    socket.write(`${text}\r\n`)
    ;(socket as Socket).setTimeout?.(0)
    const conn = new TunnelConnection(this, socket, o.socket, instance, handshake, this.#config.handoffTimeoutMs)
    this.#track(conn, instance)
    socket.off('error', ignore)
    keepWhenSilent(socket)
    dropClearedTimer(socket as Socket)
    if (o.head.length > 0) conn.received(o.socket, o.head)
    if (head.length > 0) conn.received(socket, head)
    outcomes.end(instance, 101, ms, false)
  }

  /**
   * Tries instances until one answers the handshake, retrying elsewhere
   * only when the handshake cannot have reached the application (as
   * requests are retried); answers the client itself when none does.
   */
  async #reach<T extends { kind: string }>(
    u: Upgrade,
    open: (instance: Instance) => Attempt<T | Failed>,
  ): Promise<{ instance: Instance; outcome: Exclude<T, Failed>; ms: number } | undefined> {
    const { socket, table, route } = u
    const started = performance.now()
    const outcomes = this.#sluice.outcomes
    let instance = u.first
    for (let tries = 0; ; tries++) {
      const attempt = open(instance)
      const abort = () => attempt.abort()
      socket.once('close', abort)
      if (socket.destroyed) attempt.abort()
      const o = await attempt.done
      socket.off('close', abort)
      const ms = performance.now() - started
      if (o.kind !== 'failed') return { instance, outcome: o as Exclude<T, Failed>, ms }
      const failed = o as Failed
      if (socket.destroyed) {
        outcomes.end(instance, CLIENT_CLOSED, ms, false)
        return undefined
      }
      if (failed.beforeSend && tries < this.#sluice.config.retries.attempts) {
        const next = table.chooseRetry(route, u.handshake.key, instance)
        if (next !== undefined) {
          outcomes.tryFailed(instance)
          instance = next
          continue
        }
      }
      const answer = failed.timeout ? new UpstreamTimeoutError(failed.error) : new UpstreamFailedError(failed.error)
      outcomes.end(instance, answer.status, ms, true)
      writeOwnAnswer(socket, answer)
      return undefined
    }
  }

  /**
   * The client left (499), or a stop began (503), while the upstream was
   * being reached: `release` lets the upstream go. 0 when neither.
   */
  #unwanted(socket: Duplex, release: () => void): number {
    if (!socket.destroyed && !this.#stopping) return 0
    release()
    if (socket.destroyed) return CLIENT_CLOSED
    const answer = new ShuttingDownError()
    writeOwnAnswer(socket, answer)
    return answer.status
  }

  #relayOptions(): RelayUpstreamOptions {
    const c = this.#sluice.config
    return {
      connectMs: c.timeouts.connectMs,
      upstreamMs: c.timeouts.upstreamMs,
      maxPayload: c.websocket.maxPayload,
      perMessageDeflate: c.websocket.perMessageDeflate,
      closeTimeoutMs: c.websocket.handoffTimeoutMs,
    }
  }

  /** The client-facing server side, rebuilt when a reload changes the websocket section. */
  #clientServer(): WebSocketServer {
    const cfg = this.#config
    if (this.#server === undefined || this.#serverFor !== cfg) {
      // ws 8.23 takes closeTimeout; @types/ws 8.18 does not list it yet.
      const options: ServerOptions<typeof RelaySide> & { closeTimeout: number } = {
        noServer: true,
        clientTracking: false,
        autoPong: false,
        // How long a close sent to the client waits for its close frame: as toward an upstream, not ws's 30 s.
        closeTimeout: cfg.handoffTimeoutMs,
        maxPayload: cfg.maxPayload,
        perMessageDeflate: cfg.perMessageDeflate,
        handleProtocols: upstreamChoice,
        WebSocket: RelaySide,
      }
      this.#server = new WebSocketServer(options)
      this.#server.on('headers', addPassedHeaders)
      this.#serverFor = cfg
    }
    return this.#server
  }

  // ---- tracking ----

  #track(c: WsConnection, instance: Instance): void {
    this.#add(c, instance)
    this.#open++
    this.#ensureSweep()
  }

  #add(c: WsConnection, instance: Instance): void {
    let set = this.#byInstance.get(instance)
    if (set === undefined) this.#byInstance.set(instance, (set = new Set()))
    set.add(c)
    instance.websockets++
    instance.version.websockets++
  }

  #remove(c: WsConnection, instance: Instance): void {
    const set = this.#byInstance.get(instance)
    if (set?.delete(c) !== true) return
    if (set.size === 0) this.#byInstance.delete(instance)
    instance.websockets--
    instance.version.websockets--
  }

  #review(instance: Instance, set: Set<WsConnection>, table: RoutingTable): void {
    const verdict = instanceVerdict(instance, table)
    if (verdict === 'stay') return
    for (const c of [...set]) if (verdict === 'move' || routedElsewhere(c, table)) c.moveOff()
  }

  #ensureSweep(): void {
    const idleMs = this.#config.idleTimeoutMs
    const every = idleMs > 0 ? Math.max(Math.floor(idleMs / IDLE_TICKS), 1) : 0
    if (every === this.#sweepMs || this.#stopping) return
    clearInterval(this.#sweep)
    this.#sweepMs = every
    if (every > 0) this.#sweep = setInterval(() => this.#idleSweep(), every).unref()
  }

  #idleSweep(): void {
    for (const set of this.#byInstance.values())
      for (const c of set) if (c.idleable && ++c.idleTicks > IDLE_TICKS) c.shut(1001, 'idle timeout')
  }
}

/**
 * Whether routing still wants connections on `instance`: 'move' when it
 * drains (itself or its version) or is no longer configured; 'check' when
 * its version lost all weight (each connection moves unless an override, or
 * failing open, still routes it there); else 'stay'. A failed probe or an
 * outlier ejection sends new connections elsewhere but leaves open ones
 * where they are, as Envoy and HAProxy do by default: a working socket is
 * its own proof of life, and a flapping probe would otherwise move (in
 * tunnel mode: close) every socket on the instance each time it flaps. A
 * socket whose upstream really dies closes on its own.
 */
function instanceVerdict(instance: Instance, table: RoutingTable): 'move' | 'check' | 'stay' {
  let route: VersionRoute | undefined
  for (const r of table.routes) if (r.version === instance.version) route = r
  const version = instance.version
  if (route === undefined || instance.draining || version.draining || !version.instances.includes(instance)) {
    return 'move'
  }
  return route.weight === 0 ? 'check' : 'stay'
}

function routedElsewhere(c: WsConnection, table: RoutingTable): boolean {
  const h = c.handshake
  return table.chooseVersion(h.request, h.key)?.version !== c.instance.version
}

function upstreamChoice(_offered: Set<string>, req: IncomingMessage): string | false {
  return (req as UpgradeRequest)[kProtocol] || false
}

function addPassedHeaders(headers: string[], req: IncomingMessage): void {
  const passed = (req as UpgradeRequest)[kPassed]
  if (passed !== undefined) for (const line of passed) headers.push(line)
}

function ignore(): void {}
