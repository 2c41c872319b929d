# syntax=docker/dockerfile:1
# One image for both worker kinds; docker-compose.yml picks the entry point and mounts the config.
FROM node:20-slim

WORKDIR /app

# Dependencies first, so this layer is rebuilt only when the lockfile changes. Dev dependencies
# stay: the workers run TypeScript through tsx, and @temporalio/worker bundles the workflows at start.
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund --loglevel=error

COPY tsconfig.json ./
COPY src ./src
COPY workflows ./workflows
COPY activities ./activities
COPY worker ./worker

# The data plane's file root and the key files. Created here (owned by `node`) so named volumes
# mounted on them start out writable for the non-root user.
RUN mkdir -p /data/files /data/keys && chown -R node:node /data
USER node

# `node --import tsx` rather than `npx tsx`: one process, which gets SIGTERM from `docker stop`
# directly and shuts its worker down cleanly.
ENTRYPOINT ["node", "--import", "tsx"]
CMD ["worker/controlPlaneWorker.ts", "--config", "/config/control-plane.json"]
