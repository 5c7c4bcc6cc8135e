import { spawn } from "node:child_process";
import { describe, expect, it } from "vitest";
import { killAndConfirm } from "../../src/chaos/connector.ts";

function child(script: string) {
  const c = spawn(process.execPath, ["-e", script], { stdio: "ignore" });
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => c.once("exit", (code, signal) => resolve({ code, signal })));
  return { child: c, exited };
}

describe("the chaos run's kill", () => {
  it("confirms a SIGKILL of a live process", async () => {
    const c = child("setInterval(() => {}, 1000)");
    await new Promise((r) => setTimeout(r, 200));
    expect(await killAndConfirm(c)).toEqual({ ok: true });
  });

  it("is no kill when the process had already exited by itself", async () => {
    const c = child("process.exit(3)");
    await c.exited;
    const result = await killAndConfirm(c);
    expect(result.ok).toBe(false);
    expect(!result.ok && result.reason).toMatch(/already exited \(code 3/);
  });
});
