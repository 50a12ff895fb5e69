// nginx and HAProxy as reverse proxies next to sluice in the edge benches
// (bench/bodies.js, bench/latency.js): a generated config in a temp dir,
// loopback only, in the foreground (no daemon), one process / one thread each
// like the Node targets, upstream keep-alive on, buffering off.
import { spawn, spawnSync } from 'node:child_process'
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs'
import { createServer } from 'node:net'
import { tmpdir } from 'node:os'
import { join } from 'node:path'

export const NGINX = '/usr/sbin/nginx'
export const HAPROXY = '/usr/sbin/haproxy'

/** The first line a binary prints for -v (nginx prints on stderr). */
export function versionOf(bin) {
  const r = spawnSync(bin, ['-v'], { encoding: 'utf8' })
  return `${r.stdout}${r.stderr}`.split('\n')[0].trim()
}

/**
 * A port the kernel just handed out. nginx and HAProxy cannot report a port-0
 * bind, so this is the one place the benches pick a port and reuse it; a
 * lost race shows as the peer failing to start.
 */
function freePort() {
  return new Promise((resolve, reject) => {
    const s = createServer()
    s.once('error', reject)
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address()
      s.close(() => resolve(port))
    })
  })
}

/** Polls until something accepts on the port, or throws. */
async function accepting(label, port, proc) {
  const { connect } = await import('node:net')
  const deadline = Date.now() + 10_000
  for (;;) {
    if (proc.exitCode !== null) throw new Error(`${label} exited (code ${proc.exitCode})`)
    const ok = await new Promise((resolve) => {
      const c = connect(port, '127.0.0.1')
      c.once('connect', () => resolve(c.destroy() || true))
      c.once('error', () => resolve(false))
    })
    if (ok) return
    if (Date.now() > deadline) throw new Error(`${label} not accepting on ${port}`)
    await new Promise((r) => setTimeout(r, 50))
  }
}

function running(label, bin, args, dir, port) {
  const proc = spawn(bin, args, { stdio: ['ignore', 'ignore', 'inherit'] })
  const exited = new Promise((resolve) => proc.once('exit', resolve))
  return {
    label,
    proc,
    pid: proc.pid,
    url: `http://127.0.0.1:${port}`,
    ready: accepting(label, port, proc),
    async stop() {
      if (proc.exitCode === null && proc.signalCode === null) {
        proc.kill('SIGTERM')
        const t = setTimeout(() => proc.kill('SIGKILL'), 5_000)
        await exited
        clearTimeout(t)
      }
      rmSync(dir, { recursive: true, force: true })
    },
  }
}

/**
 * nginx 1.22 in front of `upstream` (http://127.0.0.1:PORT): proxy_buffering and proxy_request_buffering off.
 * With `tls` ({ cert, key } PEM files): an ssl listener (TLS 1.2 and 1.3, nginx's default ciphers), and
 * `http2` turns on HTTP/2 there (ALPN h2 and http/1.1), as bench/tls.js compares them. `workers` above 1
 * runs a master with that many worker processes (bench/workers.js).
 */
export async function startNginx(upstream, { tls, http2 = false, workers = 1 } = {}) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-nginx-'))
  const port = await freePort()
  const target = upstream.replace(/^http:\/\//, '')
  writeFileSync(
    join(dir, 'nginx.conf'),
    `daemon off;
master_process ${workers > 1 ? 'on' : 'off'};
worker_processes ${workers};
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  client_body_temp_path ${dir}/client_body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  upstream app { server ${target}; keepalive 64; }
  server {
    listen 127.0.0.1:${port}${tls ? ` ssl${http2 ? ' http2' : ''}` : ''};${
      tls
        ? `
    ssl_certificate ${tls.cert};
    ssl_certificate_key ${tls.key};
    ssl_protocols TLSv1.2 TLSv1.3;
    http2_max_concurrent_streams 100;`
        : ''
    }
    keepalive_requests 1000000;
    client_max_body_size 0;
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_buffering off;
      proxy_request_buffering off;
      proxy_read_timeout 60s;
    }
  }
}
`,
  )
  const r = running('nginx', NGINX, ['-p', dir, '-c', join(dir, 'nginx.conf'), '-e', join(dir, 'error.log')], dir, port)
  return tls ? { ...r, url: `https://127.0.0.1:${port}` } : r
}

/** HAProxy 2.6 in front of `upstream`, one thread, server connections reused. */
export async function startHaproxy(upstream) {
  const dir = mkdtempSync(join(tmpdir(), 'sluice-bench-haproxy-'))
  const port = await freePort()
  const target = upstream.replace(/^http:\/\//, '')
  writeFileSync(
    join(dir, 'haproxy.cfg'),
    `global
  nbthread 1
  maxconn 4096
defaults
  mode http
  timeout connect 5s
  timeout client 60s
  timeout server 60s
  timeout http-keep-alive 60s
frontend edge
  bind 127.0.0.1:${port}
  default_backend app
backend app
  http-reuse always
  server app ${target}
`,
  )
  return running('haproxy', HAPROXY, ['-db', '-f', join(dir, 'haproxy.cfg')], dir, port)
}
