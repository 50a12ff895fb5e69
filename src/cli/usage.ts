/** The CLI's usage texts, apart from the commands so `--help` loads none of them. */
export const USAGE = `usage: sluice <command>

  serve --config FILE      run the proxy in the foreground
  validate --config FILE   check a config file; prints ok or every problem
  demo                     demo upstreams and a proxy in front, on loopback
  ctl <verb> ...           admin API client (sluice ctl --help)

Every command answers --help.
`

export const SERVE_USAGE = `usage: sluice serve --config FILE [--workers N|auto]

Runs the proxy in the foreground: JSON log lines (pino) on stdout, one with
"msg":"listening" and the bound port and adminPort once both listeners are
up. SIGHUP reloads the config; SIGTERM or SIGINT stop gracefully. --workers
overrides the config's workers; with workers, SIGUSR2 replaces them one at
a time with ones running the code and config on disk.

exit codes: 0 after a graceful stop, 1 invalid config or failed start (one line on stderr), 2 usage error
`

export const VALIDATE_USAGE = `usage: sluice validate --config FILE

Prints ok, or every problem of the config file with its key path.

exit codes: 0 valid, 1 invalid, 2 usage error
`

export const DEMO_USAGE = `usage: sluice demo [--port PORT] [--admin-port PORT]

Five demo instances (blue x2, green x2, canary x1) on loopback and the proxy
in front, weights blue 80 green 20; no config file, no Redis. Prints the
URLs and curl lines, then every change (weights, rollout steps, rollbacks,
instances going down or coming back) as it happens. Ctrl-C stops it.

  --port PORT        the proxy's port (default 8080)
  --admin-port PORT  the admin API and status page (default 9901)

A port already taken falls back to a free one (printed).
`
