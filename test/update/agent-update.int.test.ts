/**
 * The agent's side of self-update with real processes: `kerf run` children against a devcloud
 * that serves a repository made by the release tooling. Each test edits the demo's config and
 * starts the enrolled connector again on the same state folder.
 */
import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { HealthReport } from "../../src/agent/health.ts";
import { publicKeyPin } from "../../src/certs/pins.ts";
import { generateKeyPair, privateKeyToPem } from "../../src/certs/x509.ts";
import { packBundle } from "../../src/release/bundle.ts";
import { publishBundle } from "../../src/release/publish.ts";
import { initRepo, metadataDir } from "../../src/release/repo.ts";
import { writePointer } from "../../src/update/pointer.ts";
import { appVersion } from "../../src/update/version.ts";
import { DEMO_MACHINE, waitFor } from "../helpers/env.ts";
import { demoForKerfRun, editConfig, killHard, startConnector, stopLikeAContainer, type Connector } from "../e2e/connector.ts";

const source = path.resolve(import.meta.dirname, "../..");
const kerfBin = path.join(source, "bin/kerf.js");
const running = appVersion();
const bump = (patch: number) => running.replace(/\d+$/, (p) => String(Number(p) + patch));

let env: Awaited<ReturnType<typeof demoForKerfRun>>;
let repoDir: string;
let keysDir: string;
let state: string;
let pins: string[];
const published = new Set<string>();
const connectors: Connector[] = [];

beforeAll(async () => {
  env = await demoForKerfRun();
  repoDir = path.join(env.dir, "repo");
  keysDir = path.join(env.dir, "keys");
  initRepo({ repoDir, keysDir });
  env.demo.devcloud.tuf.dir = repoDir;
  state = env.demo.connectorStateDir;
  editConfig(env.demo.configFile, (c) => (pins = c.cloud.pins));
  // Enrol once (the bootstrap token is single-use); every test starts this identity again.
  const c = run();
  await waitFor("values at the cloud", () => env.demo.devcloud.store.latest(DEMO_MACHINE)["spindle.speed"], 60_000);
  await stopLikeAContainer(c);
}, 120_000);
afterEach(async () => {
  for (const c of connectors.splice(0)) await killHard(c);
  for (const d of ["update", "app"]) rmSync(path.join(state, d), { recursive: true, force: true });
});
afterAll(async () => {
  await env?.stop();
});

function run(envVars: Record<string, string> = {}): Connector {
  const c = startConnector(env.demo.configFile, state, envVars);
  connectors.push(c);
  return c;
}

async function publish(version: string, signedPins?: string[]): Promise<string> {
  const bundle = path.join(env.dir, `kerf-${version}.tar.gz`);
  if (published.has(version)) return bundle;
  await packBundle({ sourceDir: source, out: bundle, version });
  await publishBundle({ repoDir, keysDir, bundle, ...(signedPins ? { pins: signedPins } : {}) });
  published.add(version);
  return bundle;
}

function configureUpdate(update: Record<string, unknown>, cloud: Record<string, unknown> = {}): void {
  editConfig(env.demo.configFile, (c) => {
    c.update = { trustedRoot: path.join(metadataDir(repoDir), "1.root.json"), checkIntervalSeconds: 10, retryAfterErrorSeconds: 10, ...update };
    c.cloud = { ...c.cloud, pins, ...cloud };
  });
}

const health = () => {
  try {
    return JSON.parse(readFileSync(path.join(state, "health.json"), "utf8")) as HealthReport;
  } catch {
    return undefined;
  }
};
const requestFile = () => path.join(state, "app", "request.json");
const sha256 = (file: string) => createHash("sha256").update(readFileSync(file)).digest("hex");

describe("kerf run checks the signed channel", () => {
  it("holds a verified release back while the lock file exists, then unpacks it and requests its install", { timeout: 90_000 }, async () => {
    const version = bump(1);
    const bundle = await publish(version);
    const lockFile = path.join(env.dir, "job.lock");
    writeFileSync(lockFile, "");
    configureUpdate({ lock: { file: lockFile } });
    run({ KERF_LAUNCHER: "1" });
    const held = await waitFor("held by the lock", () => (health()?.update?.state === "held" ? health()!.update! : undefined), 60_000, 200);
    expect(held).toMatchObject({ available: version, heldBy: { lock: expect.stringContaining(lockFile) }, lastOutcome: { outcome: "available", via: "origin" } });
    expect(existsSync(requestFile())).toBe(false);

    rmSync(lockFile);
    const request = await waitFor("the install request", () => existsSync(requestFile()) && JSON.parse(readFileSync(requestFile(), "utf8")), 30_000, 200);
    const dir = path.join(state, "update", "unpacked", version);
    expect(request).toEqual({ version, dir, sha256: sha256(bundle), requestedAt: expect.any(String) });
    expect(JSON.parse(readFileSync(path.join(dir, "kerf-bundle.json"), "utf8")).version).toBe(version);
    expect(existsSync(path.join(dir, "bin", "kerf.js"))).toBe(true);
  });

  it("without kerf launch it downloads but requests nothing, and health says so", { timeout: 90_000 }, async () => {
    await publish(bump(1));
    configureUpdate({});
    run();
    const warning = await waitFor("the warning", () => health()?.warnings?.find((w) => w.part === "update"), 60_000, 200);
    expect(warning.reason).toBe(`update ${bump(1)} downloaded but kerf run is not under kerf launch`);
    expect(existsSync(requestFile())).toBe(false);
  });

  it("reports the launcher's last outcome upstream once", { timeout: 90_000 }, async () => {
    configureUpdate({});
    const reason = "the new version exited with code 70 before it became healthy";
    writePointer(state, { active: { slot: "factory", version: running }, previous: null, trial: null, failed: [], lastOutcome: { at: new Date().toISOString(), kind: "rolled-back", version: bump(1), reason } });
    const events = () => env.demo.devcloud.store.events("_kerf");
    const before = events().length;
    let c = run();
    const event = await waitFor("the outcome at the cloud", () => events()[before], 60_000, 200);
    expect(event).toMatchObject({ kind: "event", key: "update", fields: { outcome: "rolled-back", version: bump(1), reason, summary: `rolled-back: ${reason}` } });
    await stopLikeAContainer(c);
    // Again: the second run has passed the point of reporting (its health says what was reported)
    // and values it sent well after that arrive; the outcome does not arrive again.
    rmSync(path.join(state, "health.json"));
    c = run();
    await waitFor("the second run past its report", () => health()?.update?.reported?.reason === reason, 60_000, 200);
    const later = new Date(Date.now() + 2_000).toISOString();
    await waitFor("values of the second run", () => (env.demo.devcloud.store.latest(DEMO_MACHINE)["spindle.speed"]?.t ?? "") > later, 60_000, 200);
    expect(events().length).toBe(before + 1);
  });
});

describe("pin lock-out recovery", () => {
  it("a connector with a wrong pin gets the signed pin set through the mirror and delivers again", { timeout: 120_000 }, async () => {
    const wrong = publicKeyPin(await privateKeyToPem((await generateKeyPair("ec")).privateKey));
    await publish(bump(2), [env.demo.devcloud.pin]);
    configureUpdate({ mirror: env.demo.devcloud.url }, { pins: [wrong] });
    const start = new Date().toISOString();
    const c = run();
    await waitFor("the pin mismatch", () => c.lines.some((l) => l.code === "UPLINK_PIN_MISMATCH" || /SPKI pin mismatch/.test(l.msg)), 60_000, 200);
    await waitFor("values after the restart", () => (env.demo.devcloud.store.latest(DEMO_MACHINE)["spindle.speed"]?.t ?? "") > start, 90_000, 200);
    const pins = JSON.parse(readFileSync(path.join(state, "update", "pins.json"), "utf8"));
    expect(pins).toMatchObject({ pins: [env.demo.devcloud.pin], release: bump(2), targetsVersion: expect.any(Number) });
    // health.json is rewritten every second: the report after the check names the signed pins and the mirror
    const update = await waitFor("the health report after the check", () => (health()?.update?.pins.source === "signed" ? health()!.update! : undefined), 30_000, 200);
    expect(update).toMatchObject({ pins: { source: "signed", release: bump(2) }, lastOutcome: { via: "mirror" } });
  });
});

describe("kerf update check and apply", () => {
  it("checks once; apply respects the update lock unless --force and says when no launcher runs", { timeout: 90_000 }, async () => {
    const version = bump(3);
    await publish(version);
    const lockFile = path.join(env.dir, "job.lock");
    writeFileSync(lockFile, "");
    configureUpdate({ apply: "manual", lock: { file: lockFile } });
    const kerf = (...args: string[]) =>
      new Promise<{ code: number | null; stdout: string }>((resolve) => {
        const child = spawn(kerfBin, ["update", ...args, "--config", env.demo.configFile, "--state-dir", state], { stdio: ["ignore", "pipe", "inherit"] });
        let stdout = "";
        child.stdout.setEncoding("utf8").on("data", (d: string) => (stdout += d));
        child.once("exit", (code) => resolve({ code, stdout }));
      });
    const check = await kerf("check", "--json");
    expect(check.code).toBe(0);
    expect(JSON.parse(check.stdout)).toMatchObject({ outcome: "available", version, via: "origin" });
    expect(existsSync(requestFile())).toBe(false);
    const status = await new Promise<string>((resolve) => {
      const child = spawn(kerfBin, ["update", "status", "--state-dir", state], { stdio: ["ignore", "pipe", "inherit"] });
      let out = "";
      child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
      child.once("exit", () => resolve(out));
    });
    expect(status).toMatch(new RegExp(`^last check: +\\S+ available: ${version.replaceAll(".", "\\.")} \\(via origin\\)`, "m"));
    const held = await kerf("apply");
    expect(held.code).toBe(1);
    expect(held.stdout).toMatch(/not requested: the update lock is held: the lock file .*job\.lock exists \(--force installs anyway\)/);
    expect(existsSync(requestFile())).toBe(false);
    const apply = await kerf("apply", "--force");
    expect(apply.code).toBe(0);
    expect(apply.stdout).toMatch(new RegExp(`available: ${version.replaceAll(".", "\\.")} .*install requested: no launcher is running \\(the connector is not running\\)`));
    expect(JSON.parse(readFileSync(requestFile(), "utf8"))).toMatchObject({ version });
  });
});
