# syntax=docker/dockerfile:1
# Build: docker build -t shoal .   Run: docker run --network host -v shoal:/var/lib/shoal shoal
FROM node:24-bookworm-slim AS build
WORKDIR /src
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund
COPY tsconfig.json ./
COPY src ./src
RUN npx tsc -p tsconfig.json && npm prune --omit=dev --ignore-scripts

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    SHOAL_LISTEN=0.0.0.0:5000 \
    SHOAL_DATA_DIR=/var/lib/shoal
WORKDIR /opt/shoal
COPY --from=build /src/node_modules ./node_modules
COPY --from=build /src/dist/src ./dist/src
COPY --from=build /src/package.json ./
RUN mkdir -p /var/lib/shoal && chown node:node /var/lib/shoal
USER node
VOLUME ["/var/lib/shoal"]
EXPOSE 5000
HEALTHCHECK --interval=30s --timeout=3s --start-period=10s \
  CMD ["node", "-e", "fetch('http://127.0.0.1:5000/v2/').then(r=>process.exit(r.status<500?0:1),()=>process.exit(1))"]
# exec form: node is PID 1's child-free process and receives SIGTERM directly.
ENTRYPOINT ["node", "dist/src/cli/main.js"]
CMD ["daemon"]
