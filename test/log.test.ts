import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { createLogger, prettyLine, recentLogLines } from "../src/log.ts";

interface Line {
  level: number;
  msg: string;
  component?: string;
  machine?: string;
  repeated?: number;
  [k: string]: unknown;
}

function capture(repeatWindowMs: number) {
  const lines: Line[] = [];
  const logger = createLogger({ level: "info", repeatWindowMs, destination: { write: (s: string) => void lines.push(JSON.parse(s) as Line) } });
  return { logger, lines };
}

describe("repeated log events", () => {
  // The clock is the test's: windows end when it says, however busy the machine is.
  beforeEach(() => {
    vi.useFakeTimers();
  });
  afterEach(() => {
    vi.useRealTimers();
  });

  it("are logged once, then summed up with a count when the window ends", () => {
    const { logger, lines } = capture(10_000);
    const opcua = logger.child({ component: "opcua", machine: "saw-1" });
    // 354 in 6 s, as a repair loop wrote them when another server had taken the port
    for (let i = 0; i < 354; i++) {
      opcua.warn({ err: `EADDRINUSE ${i}` }, "repair failed; retrying");
      vi.advanceTimersByTime(17);
    }
    expect(lines).toEqual([expect.objectContaining({ level: 40, msg: "repair failed; retrying", component: "opcua", machine: "saw-1", err: "EADDRINUSE 0" })]);
    vi.advanceTimersByTime(10_000 - 354 * 17);
    expect(lines).toHaveLength(2);
    expect(lines[1]).toMatchObject({ level: 40, component: "opcua", machine: "saw-1", repeated: 353, err: "EADDRINUSE 353", msg: "repair failed; retrying … repeated 353 times in 10 s" });
  });

  it("never hide a different event: another message, level, component or machine", () => {
    const { logger, lines } = capture(60_000);
    const a = logger.child({ component: "opcua", machine: "saw-1" });
    const b = logger.child({ component: "opcua", machine: "saw-2" });
    const c = logger.child({ component: "uplink" });
    for (let i = 0; i < 3; i++) {
      a.warn("connect failed");
      b.warn("connect failed");
      c.warn("connect failed");
      a.error("connect failed");
      a.warn("session closed");
      logger.warn({ machine: "saw-3" }, "connect failed");
      logger.warn({ machine: "saw-4" }, "connect failed");
      a.warn("connect failed after %d ms", 100 + i);
      a.warn(new Error(`socket ${i} hung up`));
    }
    const seen = lines.map((l) => `${l.level} ${l.component ?? "-"} ${l.machine ?? "-"} ${l.msg}`);
    expect(seen).toEqual([
      "40 opcua saw-1 connect failed",
      "40 opcua saw-2 connect failed",
      "40 uplink - connect failed",
      "50 opcua saw-1 connect failed",
      "40 opcua saw-1 session closed",
      "40 - saw-3 connect failed",
      "40 - saw-4 connect failed",
      "40 opcua saw-1 connect failed after 100 ms",
      "40 opcua saw-1 socket 0 hung up",
      "40 opcua saw-1 connect failed after 101 ms",
      "40 opcua saw-1 socket 1 hung up",
      "40 opcua saw-1 connect failed after 102 ms",
      "40 opcua saw-1 socket 2 hung up",
    ]);
  });

  it("a steady repeat gives one summary per window; a quiet spell starts over", () => {
    const { logger, lines } = capture(1000);
    logger.info("tick");
    logger.info("tick");
    vi.advanceTimersByTime(1000);
    expect(lines.map((l) => l.msg)).toEqual(["tick", "tick … repeated 1 time in 1 s"]);
    vi.advanceTimersByTime(500);
    logger.info("tick"); // within the next window: counted
    vi.advanceTimersByTime(500);
    expect(lines.map((l) => l.repeated)).toEqual([undefined, 1, 1]);
    vi.advanceTimersByTime(5000);
    expect(lines).toHaveLength(3); // nothing more to say
    logger.info("tick"); // after a quiet window: logged again in full
    expect(lines).toHaveLength(4);
    expect(lines[3]).toMatchObject({ msg: "tick" });
    expect(lines[3]!.repeated).toBeUndefined();
  });
});

describe("log lines on a terminal", () => {
  it("are one readable line: time, level, component and machine, message, then key=value", () => {
    const json = JSON.stringify({ level: 40, time: Date.UTC(2026, 0, 2, 3, 4, 5, 678), pid: 1, hostname: "h", name: "kerf", component: "opcua", machine: "saw-1", msg: "connect failed", err: { type: "Error", message: "ECONNREFUSED 127.0.0.1:4840", stack: "…" }, attempt: 3, url: "opc.tcp://x:1" });
    expect(prettyLine(json)).toBe('03:04:05.678 WARN  opcua saw-1: connect failed  err="ECONNREFUSED 127.0.0.1:4840" attempt=3 url=opc.tcp://x:1\n');
    expect(prettyLine(JSON.stringify({ level: 30, time: 0, msg: "kerf started" }))).toBe("00:00:00.000 INFO  kerf started\n");
  });
});

// The remote diagnostics action (issue 16) returns the newest lines: redacted as they were written.
it("keeps the newest lines for diagnostics, with secrets redacted", () => {
  const logger = createLogger({ level: "info", destination: { write: () => undefined } });
  logger.info({ token: "tok-secret-1", password: "pw-secret-2" }, "token obtained");
  logger.warn("sent Authorization: Bearer eyJhbGciOi.secret3.sig to the cloud");
  logger.info("key -----BEGIN PRIVATE KEY-----\nMIGHAgEAsecret4\n-----END PRIVATE KEY----- loaded");
  const lines = recentLogLines(3);
  expect(lines).toHaveLength(3);
  expect(lines[0]).toContain("token obtained");
  const text = lines.join("\n");
  for (const secret of ["tok-secret-1", "pw-secret-2", "secret3", "secret4"]) expect(text).not.toContain(secret);
  expect(text).toContain("Bearer [redacted]");
});

// Issue 17: secrets never appear in a log line, whatever field or text carries them.
it("redacts secrets in nested fields and in message texts on every line written", () => {
  const written: string[] = [];
  const logger = createLogger({ level: "info", destination: { write: (l: string) => void written.push(l) } });
  logger.info({ cloud: { proxy: { password: "pw-nested-1" } }, bootstrapToken: "boot-2", auth: { client_secret: "cs-3" }, headers: { "proxy-authorization": "Basic cHJveHk6c2VjcmV0NA==" } }, "configured");
  logger.warn("proxy https://alice:pw-url-5@proxy.plant.example:3128 refused Basic dXNlcjpzZWNyZXQ2 and Bearer tok.en7");
  logger.error("key -----BEGIN EC PRIVATE KEY-----\nMHcCAQEEsecret8-----\n-----END EC PRIVATE KEY----- was refused");
  const text = written.join("");
  expect(written).toHaveLength(3);
  for (const secret of ["pw-nested-1", "boot-2", "cs-3", "cHJveHk6c2VjcmV0NA", "pw-url-5", "dXNlcjpzZWNyZXQ2", "tok.en7", "secret8"]) expect(text, secret).not.toContain(secret);
  expect(text).toContain("https://***@proxy.plant.example:3128");
  expect(text).toContain("configured");
});
