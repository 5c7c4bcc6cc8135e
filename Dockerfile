# syntax=docker/dockerfile:1
# Kerf connector image. Outbound connections only: no port is exposed or listened on.

FROM node:24-bookworm-slim AS deps
WORKDIR /app
COPY package.json package-lock.json ./
# --ignore-scripts: no dependency needs an install script, and none gets to run one.
RUN npm ci --omit=dev --ignore-scripts --no-audit --no-fund && npm cache clean --force

FROM node:24-bookworm-slim
# TMPDIR: the only place outside the state volume that is written: tuf-js downloads an update's
# files there before it moves them into the state directory, and bin/kerf.js keeps Node's compile
# cache there. Run with a read-only root filesystem and a tmpfs on /tmp (see README, "Container").
# Without that tmpfs an update download fails (a health warning) and the compile cache is skipped.
ENV NODE_ENV=production \
    KERF_CONFIG=/etc/kerf/kerf.yaml \
    KERF_STATE_DIR=/var/lib/kerf \
    TMPDIR=/tmp
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
# `kerf launch` is PID 1 and handles the signals itself: SIGTERM and SIGINT stop its child
# (kerf run flushes and exits within 8 s; the launcher SIGKILLs it at 9 s and exits before the
# runtime's SIGKILL at 10 s), SIGHUP is passed on (re-read log.level). It is the only process that
# spawns one, and it waits for its own child; kerf run starts no processes, so no orphan ever
# needs reaping and neither tini nor `docker run --init` is needed.
STOPSIGNAL SIGTERM
# The same V8 flags as bin/kerf.js's shebang line (why: see there). The immutable launcher runs
# the active app version (this image's, or an update in a slot on the volume) as its child.
ENTRYPOINT ["node", "--max-semi-space-size=16", "--max-old-space-size=1024", "bin/kerf.js", "launch"]
CMD ["--config", "/etc/kerf/kerf.yaml", "--state-dir", "/var/lib/kerf"]
