import { describe, expect, it } from 'vitest'
import { grpcMessage, grpcStatusOf, grpcTimeoutMs, isGrpc } from '../../../src/proxy/grpc.js'

describe('gRPC on the data path', () => {
  it('a request is gRPC by its content-type, with or without a subtype', () => {
    expect(isGrpc('application/grpc')).toBe(true)
    expect(isGrpc('application/grpc+proto')).toBe(true)
    expect(isGrpc('application/grpc-web')).toBe(true)
    expect(isGrpc('application/json')).toBe(false)
    expect(isGrpc('application/grpx')).toBe(false)
    expect(isGrpc(undefined)).toBe(false)
  })

  it('grpc-timeout reads every unit; a malformed one is ignored', () => {
    expect(grpcTimeoutMs('1H')).toBe(3_600_000)
    expect(grpcTimeoutMs('2M')).toBe(120_000)
    expect(grpcTimeoutMs('3S')).toBe(3000)
    expect(grpcTimeoutMs('250m')).toBe(250)
    expect(grpcTimeoutMs('5000u')).toBe(5)
    expect(grpcTimeoutMs('99999999n')).toBeCloseTo(99.999999)
    for (const bad of [undefined, '', 'S', '10', '1.5S', '123456789S', '10x', '-1S']) expect(grpcTimeoutMs(bad)).toBe(-1)
  })

  it('grpc-status is read as a code 0..16, anything else is none', () => {
    expect(grpcStatusOf({ 'grpc-status': '0' })).toBe(0)
    expect(grpcStatusOf({ 'grpc-status': '13' })).toBe(13)
    for (const bad of ['17', '', 'x', '013', ' 1']) expect(grpcStatusOf({ 'grpc-status': bad })).toBe(-1)
    expect(grpcStatusOf({})).toBe(-1)
  })

  it('grpc-message is percent-encoded outside printable ASCII, % included', () => {
    expect(grpcMessage('no usable instance')).toBe('no usable instance')
    expect(grpcMessage('100% ünavailable\n')).toBe('100%25 %C3%BCnavailable%0A')
  })
})
