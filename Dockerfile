# syntax=docker/dockerfile:1
# Kerf connector image. Outbound connections only: no port is exposed or listened on.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs an install script, and none gets to run one.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24-bookworm-slim
ENV NODE_ENV=production \
    KERF_CONFIG=/etc/kerf/kerf.yaml \
    KERF_STATE_DIR=/var/lib/kerf
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
# package-lock.json: the launcher refuses an update built against other dependencies than these.
COPY package.json package-lock.json ./
COPY bin ./bin
COPY src ./src
COPY config ./config
# The TUF root.json the update channel starts from (kerf release init writes it; see trust/README.md).
COPY trust ./trust
# State (buffer, PKI, identity) lives in a volume owned by the unprivileged user;
# the config is mounted read-only at /etc/kerf.
RUN mkdir -p /var/lib/kerf /etc/kerf && chown node:node /var/lib/kerf && chmod 0700 /var/lib/kerf
USER node
VOLUME ["/var/lib/kerf"]
# Health is read from the state folder (the agent writes it); nothing listens on a port.
HEALTHCHECK --interval=30s --timeout=10s --start-period=60s --retries=3 \
  CMD ["node", "bin/kerf.js", "health", "--state-dir", "/var/lib/kerf"]
# The same V8 flags as bin/kerf.js's shebang line (why: see there). The immutable launcher runs
# the active app version (this image's, or an update in a slot on the volume) as its child.
ENTRYPOINT ["node", "--max-semi-space-size=16", "--max-old-space-size=1024", "bin/kerf.js", "launch"]
CMD ["--config", "/etc/kerf/kerf.yaml", "--state-dir", "/var/lib/kerf"]
