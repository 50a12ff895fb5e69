import { type ServerResponse, STATUS_CODES } from 'node:http'
import type { Duplex } from 'node:stream'
import { errorBody, type SluiceError } from '../errors.js'

/**
 * A client connection as node:http leaves it: its own pause flag, and its
 * parser while it has one (`_consumed` while it reads the socket's handle).
 */
type Pausable = Duplex & {
  _paused?: boolean
  parser?: { pause(): void; resume(): void; _consumed?: boolean } | null
}

/**
 * Stops parsing the connection the way Node's server does when a client
 * does not read its answers: Node's `_paused` flag, which makes it pause
 * the parser once the bytes at hand are parsed (pausing the socket alone
 * does not stop Node's parser, which reads the socket's handle directly).
 */
export function stopReading(socket: Duplex): void {
  const s = socket as Pausable
  if (s._paused === true) return
  s._paused = true
  // Over TLS, records the client wrote apart but that arrived together reach
  // a parser that reads the handle one by one in the same read, and once
  // paused it refuses the next (HPE_PAUSED, which would pass for a malformed
  // request and close the connection). A 'data' listener takes the parser
  // off the handle (Node's own unconsume, as for any 'data' listener), so
  // what arrives while paused waits in the socket's buffer instead, up to
  // its high-water mark. It goes first: paused while consumed, the handle
  // would stop with the stream still counting a read in progress, and
  // nothing would start it again.
  if (s.parser?._consumed === true) s.on('data', ignoreData)
  s.pause()
}

function ignoreData(): void {}

/** Undoes stopReading, unless Node paused the connection itself for a write backlog (it resumes on drain). */
export function resumeReading(socket: Duplex): void {
  const s = socket as Pausable
  if (s._paused !== true || s.destroyed || s.writableNeedDrain) return
  s._paused = false
  // A connection node:http has let go of (an upgrade, a CONNECT) is read by
  // what took it over: resumed here, it would throw away what the client sent.
  if (!s.parser) return
  s.parser.resume()
  s.resume()
}

/**
 * A connection node:http has just let go of (an upgrade, a CONNECT) reads
 * again. Node pauses a connection whose client does not read its answers;
 * while its parser reads the socket's handle directly, that pause stops the
 * handle itself, and with the parser gone nothing would start it again (the
 * stream still counts a read in progress). Started as Node's own resume
 * does, what the client sends next (its close, WebSocket frames) reaches
 * whoever takes the connection.
 */
export function readReleased(socket: Duplex): void {
  const s = socket as Pausable & { _handle?: { reading?: boolean; readStart(): number } | null }
  s._paused = false
  const handle = s._handle
  if (handle == null || handle.reading === true || s.destroyed) return
  handle.reading = true
  handle.readStart()
}

/**
 * node:http's own 'drain' relay (socketOnDrain), put back on a connection it
 * has let go of (an upgrade, a CONNECT): it drops it with the rest of its
 * listeners, and an answer still written there (one read before the
 * hand-over, or a declined upgrade's own) larger than the socket's buffers
 * would wait for a drain that never reaches it, and its client with it.
 */
export function relayDrains(socket: Duplex): void {
  socket.on('drain', relayDrain)
}

function relayDrain(this: Duplex): void {
  const res = (this as { _httpMessage?: ServerResponse | null })._httpMessage
  if (res?.writableNeedDrain) res.emit('drain')
}

/**
 * Ends a client connection after what is queued on it (and `last`, an answer
 * written raw), and reads on: a connection paused for its turns would never
 * read the client's own close, and would stay open half-closed, holding a
 * slot of limits.clientConnections. Whatever else the client sends fails to
 * parse and closes it (the listener's clientError); a client that sends
 * nothing is closed after clientIdleMs.
 */
export function endConnection(socket: Duplex, last?: string): void {
  socket.end(last)
  resumeReading(socket)
  // A connection node:http's parser has let go of (an upgrade, a CONNECT) has no reader at all.
  if (socket.readableFlowing === null) socket.resume()
}

/**
 * The proxy's own answer where no response object exists (a head that never
 * parsed, a CONNECT, an upgrade node:http has let go of): the JSON error body
 * every own answer has, then the connection ends. `extraHead` is whole header
 * lines, each ending in CRLF.
 */
export function writeOwnAnswer(socket: Duplex, err: SluiceError, extraHead = ''): void {
  if (!socket.writable) {
    socket.destroy()
    return
  }
  const body = JSON.stringify(errorBody(err))
  endConnection(
    socket,
    `HTTP/1.1 ${err.status} ${STATUS_CODES[err.status] ?? ''}\r\nContent-Type: application/json\r\n` +
      `Content-Length: ${Buffer.byteLength(body)}\r\nCache-Control: no-store\r\n${extraHead}Connection: close\r\n\r\n${body}`,
  )
}

/**
 * A connection node:http's parser has let go of (an upgrade, a CONNECT)
 * lost Node's idle handling with it, though its timer (clientIdleMs, set
 * when it was accepted) still runs. Once sluice has answered and ended it,
 * a client that stays silent is closed by that timer. Before, the wait is
 * on the upstream's handshake, which connectMs and upstreamMs bound; a
 * WebSocket that takes the connection over clears the timer.
 */
export function closeWhenSilent(socket: Duplex): void {
  socket.on('timeout', onReleasedSilent)
}

/** The connection is a WebSocket's now, which keeps its own idle time: the listener would cost every idle one. */
export function keepWhenSilent(socket: Duplex): void {
  socket.off('timeout', onReleasedSilent)
}

function onReleasedSilent(this: Duplex): void {
  if (this.writableEnded) this.destroy()
}
