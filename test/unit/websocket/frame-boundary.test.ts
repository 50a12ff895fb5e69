import fc from 'fast-check'
import { describe, expect, it } from 'vitest'
import { closeFrame, FrameBoundary } from '../../../src/websocket/frame-boundary.js'

/** A frame header as RFC 6455 section 5.2 lays it out (payload bytes are zeros). */
function frame(opcode: number, length: number, masked: boolean): Buffer {
  const ext = length < 126 ? 0 : length <= 0xffff ? 2 : 8
  const head = Buffer.alloc(2 + ext + (masked ? 4 : 0))
  head[0] = 0x80 | opcode
  head[1] = (masked ? 0x80 : 0) | (ext === 0 ? length : ext === 2 ? 126 : 127)
  if (ext === 2) head.writeUInt16BE(length, 2)
  if (ext === 8) head.writeBigUInt64BE(BigInt(length), 2)
  return Buffer.concat([head, Buffer.alloc(length)])
}

const frameSpec = fc.record({
  opcode: fc.constantFrom(0x0, 0x1, 0x2, 0x8, 0x9, 0xa),
  length: fc.oneof(fc.integer({ min: 0, max: 125 }), fc.integer({ min: 126, max: 70_000 })),
  masked: fc.boolean(),
})

describe('frame boundaries in a raw WebSocket byte stream', () => {
  it('finds exactly the ends of frames however the stream is cut into chunks', () => {
    fc.assert(
      fc.property(
        fc.array(frameSpec, { minLength: 1, maxLength: 12 }),
        fc.array(fc.integer({ min: 1, max: 20_000 }), { maxLength: 30 }),
        (specs, cuts) => {
          const frames = specs.map((s) => frame(s.opcode, s.length, s.masked))
          const stream = Buffer.concat(frames)
          const ends = new Set<number>()
          let at = 0
          for (const f of frames) ends.add((at += f.length))
          // Walk the stream in the chunks given by `cuts`, stopping at every boundary.
          const found: number[] = []
          const tracker = new FrameBoundary()
          let pos = 0
          let c = 0
          while (pos < stream.length) {
            const size = cuts.length > 0 ? cuts[c++ % cuts.length]! : stream.length
            const chunk = stream.subarray(pos, Math.min(stream.length, pos + size))
            let off = 0
            while (off < chunk.length) {
              const n = tracker.consume(chunk, off, true)
              if (n === 0) {
                off += tracker.consume(chunk.subarray(off, off + 1))
              } else {
                off += n
              }
              if (tracker.atBoundary) found.push(pos + off)
            }
            pos += chunk.length
          }
          expect(new Set(found)).toEqual(ends)
          expect(tracker.atBoundary).toBe(true)
          expect(tracker.closeSeen).toBe(specs.some((s) => s.opcode === 0x8))
        },
      ),
      { numRuns: 200 },
    )
  })

  it('is at a boundary before the first byte and inside a split header', () => {
    const t = new FrameBoundary()
    expect(t.atBoundary).toBe(true)
    const f = frame(0x2, 300, true)
    t.consume(f.subarray(0, 3))
    expect(t.atBoundary).toBe(false)
    expect(t.consume(f.subarray(3), 0, true)).toBe(f.length - 3)
    expect(t.atBoundary).toBe(true)
  })

  it('builds unmasked and masked close frames with code and reason', () => {
    const plain = closeFrame(1001, 'going away', false)
    expect(plain[0]).toBe(0x88)
    expect(plain[1]).toBe(12)
    expect(plain.readUInt16BE(2)).toBe(1001)
    expect(plain.subarray(4).toString()).toBe('going away')
    const mask = Uint8Array.from([1, 2, 3, 4])
    const masked = closeFrame(1012, 'restart', true, mask)
    expect(masked[1]).toBe(0x80 | 9)
    const payload = Buffer.from(masked.subarray(6).map((b, i) => b ^ mask[i & 3]!))
    expect(payload.readUInt16BE(0)).toBe(1012)
    expect(payload.subarray(2).toString()).toBe('restart')
  })
})
