import { randomFillSync } from 'node:crypto'

/**
 * Where WebSocket frames end in a raw byte stream (RFC 6455 section 5.2),
 * without unmasking or copying payloads: per frame it reads the 2..14 header
 * bytes and then skips the payload length. Tunnel mode uses it to know when
 * a control frame (a close) may be injected: between any two frames, even
 * between the fragments of a message (section 5.4 allows control frames
 * there).
 */
export class FrameBoundary {
  /** Payload bytes of the current frame still to pass. */
  #payloadLeft = 0
  /** Header bytes gathered so far of a header split across chunks. */
  readonly #header = new Uint8Array(14)
  #headerHave = 0
  /** A close frame has begun in this direction. */
  closeSeen = false

  /** True between frames. */
  get atBoundary(): boolean {
    return this.#payloadLeft === 0 && this.#headerHave === 0
  }

  /**
   * Passes `chunk[start..]` through the tracker and returns how many bytes
   * were consumed: all of them, or with `stopAtBoundary`, only up to the
   * first frame boundary reached (0 when already at one).
   */
  consume(chunk: Uint8Array, start = 0, stopAtBoundary = false): number {
    let i = start
    const end = chunk.length
    for (;;) {
      if (stopAtBoundary && this.atBoundary) return i - start
      if (i === end) return i - start
      if (this.#payloadLeft > 0) {
        const take = Math.min(this.#payloadLeft, end - i)
        this.#payloadLeft -= take
        i += take
        continue
      }
      // In a header: gather bytes until its full length is known and present.
      const h = this.#header
      h[this.#headerHave++] = chunk[i++]!
      if (this.#headerHave < 2) continue
      const need = headerLength(h[1]!)
      if (this.#headerHave < need) continue
      this.#payloadLeft = payloadLength(h)
      this.#headerHave = 0
      if ((h[0]! & 0x0f) === 0x8) this.closeSeen = true
    }
  }
}

/** Header length from the second byte: 2, plus 2 or 8 for an extended length, plus 4 for a mask. */
function headerLength(b1: number): number {
  const len7 = b1 & 0x7f
  return 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0)
}

function payloadLength(h: Uint8Array): number {
  const len7 = h[1]! & 0x7f
  if (len7 < 126) return len7
  if (len7 === 126) return (h[2]! << 8) | h[3]!
  // 64-bit length; JavaScript numbers hold 2^53 exactly, far beyond any real frame.
  let n = 0
  for (let k = 2; k < 10; k++) n = n * 256 + h[k]!
  return n
}

/**
 * A close frame with `code` and an ASCII `reason` (cut at 123 bytes). Frames
 * a proxy sends toward an upstream must be masked (client to server).
 */
export function closeFrame(code: number, reason: string, masked: boolean, mask?: Uint8Array): Buffer {
  const text = Buffer.from(reason, 'latin1')
  const len = 2 + Math.min(text.length, 123)
  const head = masked ? 6 : 2
  const out = Buffer.allocUnsafe(head + len)
  out[0] = 0x88
  out[1] = (masked ? 0x80 : 0) | len
  out.writeUInt16BE(code, head)
  text.copy(out, head + 2, 0, len - 2)
  if (masked) {
    const m = mask ?? randomFillSync(new Uint8Array(4))
    for (let k = 0; k < 4; k++) out[2 + k] = m[k]!
    for (let k = 0; k < len; k++) out[head + k]! ^= m[k & 3]!
  }
  return out
}
