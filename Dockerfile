# syntax=docker/dockerfile:1
# Build: docker build -t shoal .
# Run (host networking puts the mirror on the host's loopback, where dockerd/containerd reach it):
#   docker run -d --name shoal --network host -e SHOAL_LISTEN=127.0.0.1:5000 -v shoal:/var/lib/shoal shoal
# Kubernetes: deploy/kubernetes (a DaemonSet that sets every SHOAL_* it needs).

# Build stage: every dependency (TypeScript included), compile, then drop the dev dependencies.
# --ignore-scripts: no install script runs (classic-level ships prebuilt binaries).
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts

# Runtime stage: Node 24, the compiled daemon and its production dependencies only.
FROM node:24-bookworm-slim
LABEL org.opencontainers.image.title="shoal" \
      org.opencontainers.image.description="Node-local read-only OCI registry mirror backed by a libp2p swarm" \
      org.opencontainers.image.licenses="Apache-2.0"
ENV NODE_ENV=production \
    SHOAL_LISTEN=0.0.0.0:5000 \
    SHOAL_DATA_DIR=/var/lib/shoal
WORKDIR /opt/shoal
COPY --from=build /src/package.json ./
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
RUN mkdir -p /var/lib/shoal && chown node:node /var/lib/shoal
# uid 1000 ("node" in the base image); the Kubernetes DaemonSet runs it as the same uid.
USER node
VOLUME ["/var/lib/shoal"]
# /v2/ mirror, libp2p swarm (with --p2p-listen), admin listener (with --admin-listen)
EXPOSE 5000 4001 9090
# Alive: the admin listener's /healthz when SHOAL_ADMIN_LISTEN is set, else the mirror's /v2/ (which
# also asks the default upstream). An all-interfaces address is checked on loopback.
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "const e=process.env,l=a=>'http://'+a.replace(/^(0\\.0\\.0\\.0|\\[::\\]):/,'127.0.0.1:');fetch(e.SHOAL_ADMIN_LISTEN?l(e.SHOAL_ADMIN_LISTEN)+'/healthz':l(e.SHOAL_LISTEN||'127.0.0.1:5000')+'/v2/',{signal:AbortSignal.timeout(4000)}).then(r=>process.exit(r.status<500?0:1),()=>process.exit(1))"]
STOPSIGNAL SIGTERM
# Exec form: node is PID 1 and gets SIGTERM itself; the daemon stops cleanly (exit 0) on it.
ENTRYPOINT ["node", "/opt/shoal/dist/src/cli/main.js"]
CMD ["daemon"]
