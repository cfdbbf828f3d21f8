# syntax=docker/dockerfile:1
#
# cdc-invalidator image. Build: docker build -t cdc-invalidator .
#
# The image holds the example config and mappings in /etc/cdc-invalidator; mount your own over that
# folder (a config file and its mappings directory, or whatever its "mappings:" key points to).

# --- build: compile TypeScript to dist/ ---
FROM node:24-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --no-audit --no-fund
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build

# --- runtime: production dependencies, dist/ and the example config ---
FROM node:24-slim AS runtime
ENV NODE_ENV=production
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --omit=dev --no-audit --no-fund && npm cache clean --force
COPY --from=build /app/dist ./dist
# The config's "mappings: ./mappings" is read relative to the config file's folder.
COPY cdc-invalidator.yaml /etc/cdc-invalidator/cdc-invalidator.yaml
COPY mappings /etc/cdc-invalidator/mappings

# The image's node user (uid 1000); the worker needs no write access to anything on disk.
USER node

# /healthz, /readyz, /metrics and /status on http.port of the config (default 9464). The health check
# asks /healthz with Node's own fetch (the slim image has no curl); it assumes the default port.
EXPOSE 9464
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9464/healthz').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
ENTRYPOINT ["node", "dist/cli.js"]
CMD ["run", "--config", "/etc/cdc-invalidator/cdc-invalidator.yaml"]
