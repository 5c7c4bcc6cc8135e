import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import os from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { processIdentity } from "../../src/agent/health.ts";
import type { StatusSummary } from "../../src/agent/status.ts";
import { kerf } from "./helpers.ts";
import { report } from "../agent/status-fixture.ts";

describe("kerf status", () => {
  const dirs: string[] = [];
  afterEach(() => {
    for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
  });
  function stateDir(): string {
    const d = mkdtempSync(path.join(os.tmpdir(), "kerf-status-"));
    dirs.push(d);
    return d;
  }

  it("prints the running connector's summary from its state directory, and the same as JSON", async () => {
    const dir = stateDir();
    // written now by a live process (this one), as the connector does
    writeFileSync(path.join(dir, "health.json"), JSON.stringify(report({ at: new Date().toISOString(), pid: process.pid, process: processIdentity() })));
    const text = await kerf(["status", "--state-dir", dir]);
    expect(text.code).toBe(0);
    expect(text.stdout).toMatch(/^kerf 1\.4\.0 {2}instance kerf-line1-saw {2}healthy: ok\n/);
    expect(text.stdout).toContain("machine   saw-1: connected, SignAndEncrypt Basic256Sha256, 42 items");

    const json = await kerf(["status", "--json", "--state-dir", dir]);
    expect(json.code).toBe(0);
    const s = JSON.parse(json.stdout) as StatusSummary;
    expect(s).toMatchObject({ status: "healthy", version: "1.4.0", buffer: { items: 120 } });
    expect(s.machines.map((m) => m.machine)).toEqual(["saw-1", "edge-1"]);
  });

  it("exits 1 when there is no report, saying where it looked", async () => {
    const dir = stateDir();
    const r = await kerf(["status", "--state-dir", dir]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain(`no health report in ${dir}`);
    const j = await kerf(["status", "--json", "--state-dir", dir]);
    expect(j.code).toBe(1);
    expect(JSON.parse(j.stdout)).toMatchObject({ status: "not running" });
  });
});
