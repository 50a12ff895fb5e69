import type { Server } from 'node:http'
import type { AddressInfo } from 'node:net'

/** Binds a server and answers the bound port (port 0: an ephemeral one); rejects on EADDRINUSE and the like. */
export async function listenOn(server: Server, host: string, port: number): Promise<number> {
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject)
    server.listen(port, host, () => {
      server.off('error', reject)
      resolve()
    })
  })
  return (server.address() as AddressInfo).port
}
