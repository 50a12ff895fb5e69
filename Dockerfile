# syntax=docker/dockerfile:1
# sluice: build with `docker build -t sluice .`, run with
#   docker run --rm -p 8080:8080 -e SLUICE_ADMIN_TOKEN=... \
#     -v "$PWD/my.yaml:/etc/sluice/sluice.yaml:ro" -v sluice-state:/var/lib/sluice \
#     --stop-timeout 35 sluice
# The built-in default is config/blue-green.yaml: an example whose upstream
# URLs point at the container's own loopback, so mount your own config. It
# reads ${SLUICE_ADMIN_TOKEN}; an unset variable is a config error.
# The proxy drains for up to drain.timeoutMs (30 s by default) on SIGTERM, so give
# `docker stop` more than that. For the admin API to be reachable through the
# published 9901, the config must set admin.host: 0.0.0.0 and an admin token.
# Runtime changes (weights, drains, rollouts) survive a restart through the
# state file: set `state: { file: /var/lib/sluice/state.json }` in your config
# (the default config does) and keep /var/lib/sluice on a named volume.
ARG NODE_VERSION=24

FROM node:${NODE_VERSION}-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# Scripts off: `prepare` compiles, and the sources are not here yet.
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY . .
RUN npm run build \
 && mkdir -p config /out/etc-sluice \
 && if [ -f config/blue-green.yaml ]; then cp config/blue-green.yaml /out/etc-sluice/sluice.yaml; fi

FROM node:${NODE_VERSION}-bookworm-slim AS runtime
ENV NODE_ENV=production
# Large uploads: Node copies each body chunk it reads into a fresh 64 KiB
# malloc block, and V8 frees them in bulk at each young-generation GC. With
# glibc's default 128 KiB trim threshold that freed run goes back to the
# kernel and the next chunks fault it in again, page by page: up to twice
# the proxy's CPU per uploaded MB (README "Run it"). Kept up to 32 MiB, it
# is reused instead.
ENV GLIBC_TUNABLES=glibc.malloc.trim_threshold=33554432
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
COPY --from=build /app/config ./config
# The default config, when the repository has one; mount your own over it.
COPY --from=build /out/etc-sluice/ /etc/sluice/
# The state file's directory, writable by the unprivileged user; a volume so
# the state outlives the container (an anonymous one when nothing is mounted).
RUN mkdir -p /var/lib/sluice && chown node:node /var/lib/sluice
VOLUME /var/lib/sluice
USER node
EXPOSE 8080 9901
# Liveness from the admin listener (inside the container, so 127.0.0.1 works);
# slim images have no curl. SLUICE_ADMIN_PORT when the config moves the admin port.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
  CMD ["node", "-e", "fetch(`http://127.0.0.1:${process.env.SLUICE_ADMIN_PORT || 9901}/healthz`, { signal: AbortSignal.timeout(2500) }).then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
CMD ["node", "dist/cli/main.js", "serve", "--config", "/etc/sluice/sluice.yaml"]
