/**
 * Issue 17 against a real `kerf run` (simulator, devcloud, enrolment): the metrics file in the
 * state directory, the loopback endpoint of status.listen, `kerf status --json`, and SIGHUP
 * changing the log level of the running connector.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { HealthReport } from "../../src/agent/health.ts";
import type { StatusSummary } from "../../src/agent/status.ts";
import type { Demo } from "../../src/demo/setup.ts";
import { DEMO_MACHINE, waitFor } from "../helpers/env.ts";
import { kerf } from "../cli/helpers.ts";
import { demoForKerfRun, editConfig, killHard, startConnector, stopLikeAContainer, type Connector } from "./connector.ts";
import { sample } from "../metrics/sample.ts";

describe("status, metrics and the log level of a running connector", () => {
  let env: Awaited<ReturnType<typeof demoForKerfRun>>;
  let demo: Demo;
  let c: Connector;

  beforeAll(async () => {
    env = await demoForKerfRun();
    demo = env.demo;
    editConfig(demo.configFile, (config) => {
      config.status = { listen: "127.0.0.1:0", metricsIntervalSeconds: 1 };
    });
    c = startConnector(demo.configFile, demo.connectorStateDir);
    await waitFor("values at the cloud", () => demo.devcloud.store.latest(DEMO_MACHINE)["spindle.speed"], 60_000);
  }, 120_000);
  afterAll(async () => {
    if (c) await killHard(c);
    await env?.stop();
  });

  it("rewrites metrics.prom with what the cloud acknowledged, and serves the same on loopback", { timeout: 60_000 }, async () => {
    const file = path.join(demo.connectorStateDir, "metrics.prom");
    const text = await waitFor("acknowledged values in metrics.prom", () => {
      try {
        const t = readFileSync(file, "utf8");
        return (sample(t, "kerf_values_acknowledged_total") ?? 0) > 0 && (sample(t, "kerf_uplink_request_duration_seconds_count{outcome=\"success\"}") ?? 0) > 0 ? t : undefined;
      } catch {
        return undefined;
      }
    }, 30_000, 250);
    expect(sample(text, `kerf_machine_connected{machine="${DEMO_MACHINE}"}`)).toBe(1);
    expect(sample(text, "kerf_values_received_total")).toBeGreaterThan(0);
    expect(sample(text, "kerf_certificate_expiry_days")).toBeGreaterThan(0);

    const report = await waitFor("the endpoint in health.json", () => {
      const r = JSON.parse(readFileSync(path.join(demo.connectorStateDir, "health.json"), "utf8")) as HealthReport;
      return r.metrics?.endpoint ? r : undefined;
    }, 30_000, 250);
    const url = report.metrics!.endpoint!;
    expect(url).toMatch(/^http:\/\/127\.0\.0\.1:\d+$/);
    const served = await (await fetch(`${url}/metrics`)).text();
    expect(sample(served, "kerf_values_acknowledged_total")).toBeGreaterThan(0);
    const status = (await (await fetch(`${url}/status`)).json()) as StatusSummary;
    expect(status.machines.map((m) => m.machine)).toEqual([DEMO_MACHINE]);
  });

  it("kerf status --json reads the same from the state directory, without a port", { timeout: 60_000 }, async () => {
    const s = await waitFor("a connected machine with its items in kerf status", async () => {
      const r = await kerf(["status", "--json", "--state-dir", demo.connectorStateDir]);
      const summary = JSON.parse(r.stdout) as StatusSummary;
      return r.code === 0 && summary.machines[0]?.items ? summary : undefined;
    }, 30_000, 500);
    expect(s.status).toBe("healthy");
    expect(s.version).toMatch(/^\d+\.\d+\.\d+/);
    expect(s.machines[0]).toMatchObject({ machine: DEMO_MACHINE, state: "connected" });
    expect(s.machines[0]!.security).toMatch(/^(None|Sign|SignAndEncrypt) /);
    expect(s.machines[0]!.lastValueAgeS).not.toBeNull();
    expect(s.identity?.instanceId).toBeTruthy();
    expect(s.identity!.daysToExpiry).toBeGreaterThan(0);
    expect(s.uplink?.lastAckAgeS).not.toBeNull();
    // the renewal loops are scheduled (health judges them overdue otherwise)
    expect(Date.parse(s.tokens!.nextRenewalAt!)).toBeGreaterThan(Date.now() - 60_000);
    const report = JSON.parse(readFileSync(path.join(demo.connectorStateDir, "health.json"), "utf8")) as HealthReport;
    expect(Date.parse(report.certificate!.nextRenewalAt!)).toBeGreaterThan(Date.now());
  });

  it("SIGHUP applies log.level from the config without a restart", { timeout: 60_000 }, async () => {
    let before: unknown;
    editConfig(demo.configFile, (config) => {
      before = config.log?.level ?? "info";
      config.log = { level: "debug" };
    });
    expect(before).not.toBe("debug");
    c.child.kill("SIGHUP");
    // read from the edited config by the running process (that children follow is test/log-level.test.ts)
    await waitFor("the level change", () => c.lines.find((l) => l.event === "log_level" && l.logLevel === "debug" && l.previous === before), 30_000, 100);
    // SIGHUP used to end the process (Node's default); it must still run and stop cleanly
    expect(c.child.exitCode).toBeNull();
    expect(await stopLikeAContainer(c)).toMatchObject({ code: 0, killed: false });
  });
});
