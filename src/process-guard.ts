import type { Logger } from "./log.ts";

/** Unhandled rejections seen since the guard was installed, by code. */
export interface ProcessGuardStats {
  unhandledRejections: number;
  byCode: Record<string, number>;
}

const stats: ProcessGuardStats = { unhandledRejections: 0, byCode: Object.create(null) as Record<string, number> };
let installed: ((reason: unknown) => void) | null = null;

/**
 * Keeps a long-running process (`kerf run`, `simulate`, `devcloud`, `demo`) up through a promise
 * rejection that nothing handled. Node ends the process on one by default; for a connector that
 * would turn one forgotten handler deep inside a library (node-opcua has had several) into a
 * lost connection to every machine and a restart loop. Each one is a bug: it is logged at
 * ERROR with its code and counted, and health reports the count. An uncaught exception still
 * ends the process, as it must: the state it leaves behind is unknown.
 *
 * Installed once per process; a second call only changes the logger.
 */
export function installProcessGuard(logger: Logger): void {
  const log = logger.child({ component: "process" });
  if (installed) process.off("unhandledRejection", installed);
  installed = (reason: unknown) => {
    const code = rejectionCode(reason);
    stats.unhandledRejections++;
    stats.byCode[code] = (stats.byCode[code] ?? 0) + 1;
    const err = reason instanceof Error ? reason : undefined;
    log.error(
      { event: "unhandled_rejection", code, count: stats.unhandledRejections, err: err ? err.message : String(reason), stack: err?.stack?.split("\n").slice(1, 6).join("\n") },
      `a promise was rejected and nothing handled it (${code}); the process goes on. This is a bug: please report it with this line`,
    );
  };
  process.on("unhandledRejection", installed);
}

/** A copy of the counters, for health. */
export function processGuardStats(): ProcessGuardStats {
  return { unhandledRejections: stats.unhandledRejections, byCode: { ...stats.byCode } };
}

/**
 * What kind of failure it was, short enough to count by: the error's own `code` (Node, undici,
 * KerfError), else the OPC UA status name its text carries, else what node-opcua's plain
 * Errors say in words that recur, else the error's class.
 */
export function rejectionCode(reason: unknown): string {
  if (reason === null || typeof reason !== "object") return typeof reason;
  const code = (reason as { code?: unknown }).code;
  if (typeof code === "string" && code.length > 0 && code.length <= 64) return code;
  const message = reason instanceof Error ? reason.message : "";
  const status = /\bBad[A-Z][A-Za-z]+/.exec(message);
  if (status) return status[0];
  if (/Transaction has timed out/i.test(message)) return "TransactionTimeout";
  if (/Transaction has been canceled/i.test(message)) return "TransactionCanceled";
  if (/Connection Break/i.test(message)) return "ConnectionBreak";
  if (/Session has been closed|session.*closed/i.test(message)) return "SessionClosed";
  return reason instanceof Error ? reason.name : "non-error";
}
