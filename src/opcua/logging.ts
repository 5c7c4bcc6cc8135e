import { setDebugLogger, setErrorLogger, setWarningLogger } from "node-opcua-client";
import type { Logger } from "../log.ts";

/** node-opcua logs through its own console writers; send them into pino instead. */
export function routeOpcuaLogging(logger: Logger): void {
  const log = logger.child({ component: "node-opcua" });
  const text = (args: unknown[]) => args.map((a) => (typeof a === "string" ? a : String(a))).join(" ").replace(/\u001b\[[0-9;]*m/g, "");
  setWarningLogger((...args: unknown[]) => log.warn(text(args)));
  setErrorLogger((...args: unknown[]) => log.error(text(args)));
  setDebugLogger((...args: unknown[]) => log.debug(text(args)));
}
