import { pino, type Logger } from "pino";

export type { Logger };

/**
 * One pino root logger; modules take a child with `component`. Secrets never reach it:
 * the redact list covers every field name under which a secret could travel.
 */
export function createLogger(options: { level?: string; name?: string } = {}): Logger {
  return pino({
    name: options.name ?? "kerf",
    level: options.level ?? process.env.KERF_LOG_LEVEL ?? "info",
    redact: {
      paths: ["password", "*.password", "key", "*.key", "privateKey", "*.privateKey", "token", "*.token", "authorization", "*.authorization"],
      censor: "[redacted]",
    },
  });
}

/** A logger that writes nowhere, for library use in tests. */
export function silentLogger(): Logger {
  return pino({ level: "silent" });
}
