# syntax=docker/dockerfile:1
# One image for every ferry process: control-plane and data-plane workers, the codec server and the
# CLI. docker-compose.yml picks the entry point and mounts the config.

# --- build: TypeScript to JavaScript (dist/) and the workflow bundles (dist/bundles) -------------
FROM node:20.20.2-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
# no scripts: `prepare` would build before the sources are here
RUN npm ci --ignore-scripts --no-audit --no-fund --loglevel=error
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker
RUN npm run build

# --- runtime: production dependencies and the built code only ----------------------------------
FROM node:20.20.2-bookworm-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund --loglevel=error && npm cache clean --force
COPY --from=build /app/dist ./dist
# The data plane's file root and the key volume's mount point, owned by `node` so that named
# volumes mounted there start out writable for the non-root user.
RUN mkdir -p /data/files /data/keys && chown -R node:node /data
USER node

# Probes on a fixed port inside the container (README "Health, metrics and logs"); JSON logs on stdout.
ENV FERRY_WORKER__HEALTH__HOST=0.0.0.0 \
    FERRY_WORKER__HEALTH__PORT=8081
EXPOSE 8081
# The workflow bundles were built ahead (dist/bundles): workers load them, no bundling at start.
HEALTHCHECK --interval=10s --timeout=3s --start-period=20s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.FERRY_WORKER__HEALTH__PORT||8081)+'/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]

# `node` as PID 1's child (compose `init: true`) gets SIGTERM from `docker stop` and drains.
ENTRYPOINT ["node"]
CMD ["dist/worker/controlPlaneWorker.js"]
