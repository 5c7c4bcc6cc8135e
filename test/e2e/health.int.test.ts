/**
 * `kerf health` (the image's HEALTHCHECK) against a real `kerf run`: healthy while it runs,
 * "not running" with a non-zero exit once it has stopped (SIGTERM) or died (SIGKILL), also when
 * its pid now names another process; "unhealthy", naming the part, while the cloud does not
 * acknowledge or a machine sends no data, and healthy again once they are back.
 */
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { parse, stringify } from "yaml";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Demo } from "../../src/demo/setup.ts";
import type { HealthReport } from "../../src/agent/health.ts";
import { DEMO_MACHINE, waitFor } from "../helpers/env.ts";
import { demoForKerfRun, editConfig, kerfHealth, killHard, startConnector, stopLikeAContainer, switchableProxy, type Connector } from "./connector.ts";

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

describe("kerf health judges the parts' progress", () => {
  const cleanups: (() => Promise<void>)[] = [];
  afterEach(async () => {
    for (const c of cleanups.splice(0).reverse()) await c();
  });

  /** A demo for `kerf run` with a switchable proxy in front of the simulator or the cloud (`target`). */
  async function behindProxy(target: (demo: Demo) => number): Promise<{ demo: Demo; proxy: Awaited<ReturnType<typeof switchableProxy>> }> {
    const env = await demoForKerfRun();
    cleanups.push(() => env.stop());
    const proxy = await switchableProxy(target(env.demo));
    cleanups.push(() => proxy.close());
    return { demo: env.demo, proxy };
  }

  async function flowing(demo: Demo): Promise<Connector> {
    const c = startConnector(demo.configFile, demo.connectorStateDir);
    cleanups.push(() => killHard(c));
    await waitFor("values at the cloud", () => demo.devcloud.store.latest(DEMO_MACHINE)["spindle.speed"], 60_000);
    await healthy(demo);
    return c;
  }

  async function healthy(demo: Demo): Promise<void> {
    await waitFor("healthy", async () => ((await kerfHealth(demo.connectorStateDir)).code === 0 ? true : undefined), 120_000, 2_000);
  }

  /** Waits (generously: the documented limit plus a report interval) for an unhealthy verdict. */
  async function unhealthy(demo: Demo): Promise<string> {
    const h = await waitFor("unhealthy", async () => {
      const r = await kerfHealth(demo.connectorStateDir);
      return r.code !== 0 ? r : undefined;
    }, 90_000, 2_000);
    expect(h.code).toBe(1);
    return h.stdout.split("\n")[0]!;
  }

  it("names the uplink while the cloud is down and values wait, and is healthy again once it is back", { timeout: 300_000 }, async () => {
    const { demo, proxy: cloud } = await behindProxy((d) => d.devcloud.port);
    // The limit is 3 × max(requestTimeoutMs, retry.maxDelayMs): 6 s here, 90 s by default.
    editConfig(demo.configFile, (c) => {
      c.cloud.url = `https://127.0.0.1:${cloud.port}`;
      // Reached through the proxy; the tokens are still for the devcloud's own URL.
      c.cloud.auth.resource = demo.devcloud.url;
      c.cloud.requestTimeoutMs = 2_000;
      c.cloud.retry = { initialDelayMs: 200, maxDelayMs: 1_000 };
    });
    await flowing(demo);

    cloud.mode("refuse");
    const line = await unhealthy(demo);
    expect(line).toMatch(/^unhealthy: uplink: no acknowledgement from the cloud for \d+ s while \d+ values wait/);
    expect(line).toMatch(/\(code UPLINK_NETWORK\)/);

    cloud.mode("forward");
    await healthy(demo);
  });

  it("names the machine whose group has no data past its watchdog, and is healthy again once data flows", { timeout: 300_000 }, async () => {
    const { demo, proxy: machine } = await behindProxy((d) => d.simulator.port);
    editConfig(demo.configFile, (c) => (c.machines[0].endpoint = `opc.tcp://127.0.0.1:${machine.port}`));
    const mappingFile = path.join(path.dirname(demo.configFile), "mapping.yaml");
    const mapping = parse(readFileSync(mappingFile, "utf8")) as { machines: Record<string, { groups: { name: string; watchdogSeconds?: number }[] }> };
    for (const g of mapping.machines[DEMO_MACHINE]!.groups) g.watchdogSeconds = 5;
    writeFileSync(mappingFile, stringify(mapping));
    await flowing(demo);

    // The machine stops sending: its connections are cut and new ones accepted and never answered.
    machine.mode("black-hole");
    const line = await unhealthy(demo);
    expect(line).toMatch(new RegExp(`^unhealthy: machine ${DEMO_MACHINE}: group 'process' has had no data for \\d+ s \\(its watchdog: 5 s\\)`));

    machine.mode("forward");
    await healthy(demo);
  });
});
