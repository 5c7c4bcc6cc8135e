import { spawnSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { rejectionCode } from "../../src/process-guard.ts";

const child = path.join(import.meta.dirname, "fixtures", "guard-child.ts");
const run = (mode: string) => spawnSync(process.execPath, [child, mode], { encoding: "utf8", timeout: 30_000 });

describe("the process guard", () => {
  it("keeps the process up through unhandled rejections, logging and counting each with its code", () => {
    const r = run("guarded");
    expect(r.status, r.stderr).toBe(0);
    const lines = r.stdout.trim().split("\n").map((l) => JSON.parse(l) as Record<string, unknown>);
    const errors = lines.filter((l) => l.level === 50);
    expect(errors.map((l) => l.code)).toEqual(["TransactionTimeout", "ECONNRESET"]);
    expect(String(errors[0]!.msg)).toMatch(/nothing handled it.*the process goes on/);
    expect(errors[0]!.err).toMatch(/Transaction has timed out/);
    // pino (sonic-boom) and process.stdout write to fd 1 apart, so the order of their lines is not fixed
    expect(lines.filter((l) => "stats" in l)).toEqual([{ stats: { unhandledRejections: 2, byCode: { TransactionTimeout: 1, ECONNRESET: 1 } } }]);
  });

  it("is what keeps it up: without it, Node ends the process at the first one", () => {
    const r = run("unguarded");
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/Transaction has timed out/);
    expect(r.stdout).not.toMatch(/stats/);
  });

  it("names a rejection by its code, its OPC UA status, or what node-opcua says", () => {
    expect(rejectionCode(Object.assign(new Error("x"), { code: "UND_ERR_SOCKET" }))).toBe("UND_ERR_SOCKET");
    expect(rejectionCode(new Error("The user could not be authenticated: BadUserAccessDenied (0x801f0000)"))).toBe("BadUserAccessDenied");
    expect(rejectionCode(new Error("Transaction has been canceled because client channel  is being closed"))).toBe("TransactionCanceled");
    expect(rejectionCode(new Error("Connection Break"))).toBe("ConnectionBreak");
    expect(rejectionCode(new Error("Session has been closed"))).toBe("SessionClosed");
    expect(rejectionCode(new TypeError("x is not a function"))).toBe("TypeError");
    expect(rejectionCode("just a string")).toBe("string");
  });
});
