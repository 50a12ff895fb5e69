import * as grpc from '@grpc/grpc-js'
import { startProxy, type TestProxy } from './proxy.js'

/** JSON messages on the wire: no proto files, no proto-loader. */
const json = {
  serialize: (v: unknown) => Buffer.from(JSON.stringify(v)),
  deserialize: (b: Buffer) => JSON.parse(b.toString('utf8')) as any,
}

function method(name: string, requestStream: boolean, responseStream: boolean) {
  return {
    path: `/sluice.test.Echo/${name}`,
    requestStream,
    responseStream,
    requestSerialize: json.serialize,
    requestDeserialize: json.deserialize,
    responseSerialize: json.serialize,
    responseDeserialize: json.deserialize,
    originalName: name,
  }
}

/** The test service: unary, both streaming kinds and bidi, every answer naming the version. */
export const ECHO_SERVICE = {
  unary: method('Unary', false, false),
  serverStream: method('ServerStream', false, true),
  clientStream: method('ClientStream', true, false),
  bidi: method('Bidi', true, true),
} satisfies grpc.ServiceDefinition

/** grpc.health.v1.Health/Check with raw protobuf bytes: an empty request, SERVING (field 1 = 1) as the answer. */
const HEALTH_SERVICE = {
  check: {
    path: '/grpc.health.v1.Health/Check',
    requestStream: false,
    responseStream: false,
    requestSerialize: (b: Buffer) => b,
    requestDeserialize: (b: Buffer) => b,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  },
} satisfies grpc.ServiceDefinition

export const EchoClient = grpc.makeGenericClientConstructor(ECHO_SERVICE, 'Echo')
export type EchoClientT = InstanceType<typeof EchoClient>

export interface GrpcUpstream {
  readonly name: string
  /** `http://127.0.0.1:PORT`: an h2c instance URL. */
  readonly url: string
  /** Calls answered, by method. */
  calls: number
  /** Of unary calls, answer this share (0..1) with INTERNAL (HTTP 200, grpc-status 13). */
  failShare: number
  /** Whether the health service answers SERVING. */
  serving: boolean
  close(): Promise<void>
}

/**
 * A real grpc-js server: cleartext HTTP/2 (as `protocol: h2c` reaches it),
 * or over TLS with `tls` (as `protocol: h2` does).
 * Unary `{ fail: true }` answers INTERNAL with a message and trailing
 * metadata; `{ failEarly: true }` PERMISSION_DENIED trailers-only; `{ sleepMs }` answers late; otherwise it echoes the request,
 * the `x-user-id` metadata and the version's name, with `x-served-by`
 * response metadata.
 */
export async function startGrpcUpstream(name: string, tls?: { cert: string; key: string }): Promise<GrpcUpstream> {
  const server = new grpc.Server()
  let unary = 0
  const u: GrpcUpstream = {
    name,
    url: '',
    calls: 0,
    failShare: 0,
    serving: true,
    close: () =>
      new Promise<void>((resolve) => {
        server.forceShutdown()
        resolve()
      }),
  }
  const served = () => {
    const md = new grpc.Metadata()
    md.set('x-served-by', name)
    return md
  }
  server.addService(ECHO_SERVICE, {
    unary(call: grpc.ServerUnaryCall<any, any>, cb: grpc.sendUnaryData<any>) {
      u.calls++
      unary++
      const req = call.request as { fail?: boolean; failEarly?: boolean; sleepMs?: number }
      if (req.failEarly === true) {
        // No metadata sent first: grpc-js answers trailers-only.
        cb({ code: grpc.status.PERMISSION_DENIED, details: `denied by ${name}` })
        return
      }
      call.sendMetadata(served())
      // Spread evenly: call n fails when n * share crosses an integer.
      const failByShare = Math.floor(unary * u.failShare) !== Math.floor((unary - 1) * u.failShare)
      if (req.fail === true || failByShare) {
        const trailers = new grpc.Metadata()
        trailers.set('x-detail', 'the canary broke')
        trailers.set('x-detail-bin', Buffer.from([0, 1, 2, 255]))
        cb({ code: grpc.status.INTERNAL, details: `boom from ${name}`, metadata: trailers })
        return
      }
      const answer = () => cb(null, { version: name, echo: req, user: call.metadata.get('x-user-id')[0] ?? null })
      if (req.sleepMs !== undefined) setTimeout(answer, req.sleepMs)
      else answer()
    },
    serverStream(call: grpc.ServerWritableStream<any, any>) {
      u.calls++
      const { count, size } = call.request as { count: number; size?: number }
      const pad = 'x'.repeat(size ?? 0)
      let i = 0
      // Written with backpressure: a slow reader holds the server back rather than its memory growing.
      const more = () => {
        while (i < count) {
          const ok = call.write({ i: i++, version: name, pad })
          if (!ok) {
            call.once('drain', more)
            return
          }
        }
        call.end()
      }
      more()
    },
    clientStream(call: grpc.ServerReadableStream<any, any>, cb: grpc.sendUnaryData<any>) {
      u.calls++
      let count = 0
      let sum = 0
      call.on('data', (m: { n: number }) => {
        count++
        sum += m.n
      })
      call.on('end', () => cb(null, { version: name, count, sum }))
    },
    bidi(call: grpc.ServerDuplexStream<any, any>) {
      u.calls++
      call.on('data', (m: unknown) => call.write({ version: name, echo: m }))
      call.on('end', () => call.end())
    },
  })
  server.addService(HEALTH_SERVICE, {
    check(_call: grpc.ServerUnaryCall<Buffer, Buffer>, cb: grpc.sendUnaryData<Buffer>) {
      if (u.serving) cb(null, Buffer.from([8, 1]))
      else cb(null, Buffer.from([8, 2]))
    },
  })
  const credentials =
    tls === undefined
      ? grpc.ServerCredentials.createInsecure()
      : grpc.ServerCredentials.createSsl(null, [{ cert_chain: Buffer.from(tls.cert), private_key: Buffer.from(tls.key) }])
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync('127.0.0.1:0', credentials, (err, p) => (err ? reject(err) : resolve(p))),
  )
  ;(u as { url: string }).url = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${port}`
  return u
}

/** A grpc-js client of the echo service at `url`: http://host:port (cleartext HTTP/2), or https:// trusting `rootPem`. */
export function echoClient(url: string, rootPem?: string): EchoClientT {
  const u = new URL(url)
  const credentials =
    u.protocol === 'https:' ? grpc.credentials.createSsl(Buffer.from(rootPem ?? '')) : grpc.credentials.createInsecure()
  return new EchoClient(u.host, credentials)
}

/** A unary call as a promise: the answer, or the error with its code, details and metadata. */
export function unaryCall(
  client: EchoClientT,
  req: unknown,
  opts: { metadata?: Record<string, string>; deadlineMs?: number } = {},
): Promise<{ value: any; headers: grpc.Metadata } | { error: grpc.ServiceError }> {
  const md = new grpc.Metadata()
  for (const [k, v] of Object.entries(opts.metadata ?? {})) md.set(k, v)
  const options: grpc.CallOptions = opts.deadlineMs === undefined ? {} : { deadline: Date.now() + opts.deadlineMs }
  return new Promise((resolve) => {
    let headers = new grpc.Metadata()
    const call = (client as any).unary(req, md, options, (err: grpc.ServiceError | null, value: unknown) =>
      resolve(err ? { error: err } : { value, headers }),
    ) as grpc.ClientUnaryCall
    call.on('metadata', (m: grpc.Metadata) => {
      headers = m
    })
  })
}

export interface GrpcBlueGreen {
  blue: GrpcUpstream
  green: GrpcUpstream
  proxy: TestProxy
  /** A grpc-js client of the proxy's h2c listener. */
  client: EchoClientT
  close(): Promise<void>
}

/** A blue and a green grpc-js server (h2c versions) behind the real proxy's h2c listener, `raw` merged into the config. */
export async function grpcBlueGreen(raw: Record<string, unknown> = {}): Promise<GrpcBlueGreen> {
  const blue = await startGrpcUpstream('blue')
  const green = await startGrpcUpstream('green')
  const proxy = await startProxy({
    listen: { host: '127.0.0.1', port: 0, http2: true },
    versions: {
      blue: { protocol: 'h2c', instances: [{ url: blue.url }] },
      green: { protocol: 'h2c', instances: [{ url: green.url }] },
    },
    weights: { blue: 100 },
    ...raw,
  })
  const client = echoClient(proxy.url)
  return {
    blue,
    green,
    proxy,
    client,
    async close() {
      client.close()
      await proxy.stop()
      await blue.close()
      await green.close()
    },
  }
}
