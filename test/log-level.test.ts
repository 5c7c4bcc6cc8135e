import { describe, expect, it } from "vitest";
import { createLogger } from "../src/log.ts";
import { applyLevel, reloadLevelOnSighup } from "../src/log-level.ts";

interface Line {
  level: number;
  msg: string;
  event?: string;
  [k: string]: unknown;
}

function capture(level: string) {
  const lines: Line[] = [];
  const logger = createLogger({ level, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  return { logger, lines };
}

describe("the log level at runtime", () => {
  it("changes for every component at once, children made before the change included", async () => {
    const { logger, lines } = capture("info");
    const opcua = logger.child({ component: "opcua" }).child({ machine: "saw-1" });
    opcua.debug("before");
    expect(await applyLevel(logger, async () => "debug")).toBe(true);
    opcua.debug("after");
    expect(lines.map((l) => l.msg)).toEqual(["log level info -> debug", "after"]);
    expect(lines[0]).toMatchObject({ event: "log_level", level: 30, logLevel: "debug", previous: "info" });
  });

  it("says so when it is raised to warn (the line comes before the change)", async () => {
    const { logger, lines } = capture("debug");
    expect(await applyLevel(logger, async () => "warn")).toBe(true);
    logger.info("hidden now");
    logger.warn("shown");
    expect(lines.map((l) => l.msg)).toEqual(["log level debug -> warn", "shown"]);
  });

  it("keeps the level when the config does not load, and says why", async () => {
    const { logger, lines } = capture("info");
    expect(await applyLevel(logger, async () => Promise.reject(new Error("kerf.yaml:2:8: log.level: not one of …")))).toBe(false);
    expect(logger.level).toBe("info");
    expect(lines).toHaveLength(1);
    expect(lines[0]).toMatchObject({ event: "log_level_unchanged", level: 40, err: "kerf.yaml:2:8: log.level: not one of …" });
  });

  it("SIGHUP re-reads it (and no longer ends the process)", async () => {
    const { logger, lines } = capture("info");
    const off = reloadLevelOnSighup(logger, async () => "debug");
    try {
      process.kill(process.pid, "SIGHUP");
      await expect.poll(() => logger.level, { timeout: 10_000 }).toBe("debug");
      expect(lines.at(-1)).toMatchObject({ event: "log_level" });
    } finally {
      off();
    }
  });
});
