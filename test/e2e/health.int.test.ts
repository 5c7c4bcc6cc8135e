/**
 * `kerf health` (the image's HEALTHCHECK) against a real `kerf run`: healthy while it runs,
 * "not running" with a non-zero exit once it has stopped (SIGTERM) or died (SIGKILL), also when
 * its pid now names another process.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Demo } from "../../src/demo/setup.ts";
import type { HealthReport } from "../../src/health.ts";
import { DEMO_MACHINE, waitFor } from "../helpers/env.ts";
import { demoForKerfRun, kerfHealth, killHard, startConnector, stopLikeAContainer, type Connector } from "./connector.ts";

describe("kerf health", () => {
  let env: Awaited<ReturnType<typeof demoForKerfRun>>;
  let demo: Demo;
  const connectors: Connector[] = [];

  beforeAll(async () => {
    env = await demoForKerfRun();
    demo = env.demo;
  });
  afterAll(async () => {
    for (const c of connectors) await killHard(c);
    await env?.stop();
  });

  async function running(): Promise<Connector> {
    const c = startConnector(demo.configFile, demo.connectorStateDir);
    connectors.push(c);
    await waitFor("values at the cloud", () => demo.devcloud.store.latest(DEMO_MACHINE)["spindle.speed"], 60_000);
    const h = await waitFor("healthy", async () => {
      const r = await kerfHealth(demo.connectorStateDir);
      return r.code === 0 ? r : undefined;
    }, 30_000, 500);
    expect(h.stdout).toMatch(/^healthy: /);
    return c;
  }

  it("says 'not running' and exits non-zero as soon as the connector has stopped", { timeout: 120_000 }, async () => {
    const c = await running();
    expect(await stopLikeAContainer(c)).toMatchObject({ code: 0, killed: false });

    const h = await kerfHealth(demo.connectorStateDir);
    expect(h.stdout).toMatch(/^not running: the connector stopped at /);
    expect(h.code).toBe(1);
    const report = JSON.parse(readFileSync(path.join(demo.connectorStateDir, "health.json"), "utf8")) as HealthReport;
    expect(report).toMatchObject({ state: "stopped", stopped: true, pid: c.child.pid });
    expect(Date.parse(report.stoppedAt!)).toBeGreaterThan(Date.now() - 60_000);
  });

  it("says 'not running' after a SIGKILL, also when the pid names another process", { timeout: 120_000 }, async () => {
    const c = await running();
    await killHard(c);

    const h = await kerfHealth(demo.connectorStateDir);
    expect(h.stdout).toMatch(/^not running: the connector \(pid \d+\) is not running/);
    expect(h.code).toBe(1);

    // The same report, as if the dead connector's pid now belonged to a live process (this one).
    const file = path.join(demo.connectorStateDir, "health.json");
    const report = JSON.parse(readFileSync(file, "utf8")) as HealthReport;
    expect(report.state).toBe("running");
    writeFileSync(file, JSON.stringify({ ...report, at: new Date().toISOString(), pid: process.pid, process: { ...report.process, pid: process.pid } }));
    const reused = await kerfHealth(demo.connectorStateDir);
    expect(reused.stdout).toMatch(/^not running: /);
    expect(reused.code).toBe(1);
  });
});
