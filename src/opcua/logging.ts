import { format } from "node:util";
import { setDebugLogger, setErrorLogger, setTraceLogger, setWarningLogger } from "node-opcua-debug";
import type { Logger } from "../log.ts";

// node-opcua passes the caller's file and line as its first argument.
interface OpcuaLogContext {
  filename?: string;
  callerline?: number;
}

const ansi = /\u001b\[[0-9;]*m/g;

function writer(log: Logger, level: "warn" | "debug" | "trace") {
  return (context?: unknown, ...args: unknown[]) => {
    if (!log.isLevelEnabled(level)) return;
    const ctx = (context ?? {}) as OpcuaLogContext;
    const msg = format(...args).replace(ansi, "");
    log[level]({ src: ctx.filename ? `${ctx.filename}:${ctx.callerline ?? "?"}` : undefined }, msg);
  };
}

/**
 * Sends node-opcua's own console output into pino. The setters are process-wide: the last
 * caller wins, which is fine because every Kerf process wants the same thing.
 *
 * node-opcua is chatty: its "errors" are mostly a peer's fault (an untrusted certificate, a
 * dropped socket) and worth a warning; its warnings are notes about the address space and
 * stay at debug, so the simulator is quiet at the default level.
 */
export function routeOpcuaLogging(logger: Logger): void {
  const log = logger.child({ component: "node-opcua" });
  setErrorLogger(writer(log, "warn"));
  setWarningLogger(writer(log, "debug"));
  setDebugLogger(writer(log, "trace"));
  setTraceLogger(writer(log, "trace"));
}
