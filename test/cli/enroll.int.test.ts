/**
 * `kerf enroll --token-file F` as an operator runs it at installation, against the devcloud's
 * EST server: a wrong token says which attempt it was and how many remain, a locked-out
 * instance says how to recover, and `kerf devcloud --issue-token` gives the token that does.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { bootstrapIdentity } from "../../src/certs/enrol.ts";
import { DEMO_INSTANCE, writeDemoConfig } from "../../src/demo/setup.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/index.ts";
import { silentLogger } from "../../src/log.ts";
import { runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";
import type { HealthReport } from "../../src/agent/health.ts";
import { waitFor } from "../helpers/env.ts";
import { kerf, startKerf } from "./helpers.ts";

const cleanups: Cleanups = [];
let dir: string;
let cloud: DevCloud;
let configFile: string;
let stateDir: string;

beforeAll(async () => {
  const tmp = await tempDir("kerf-enroll-cli-");
  dir = tmp.dir;
  cleanups.push(tmp.remove);
  cloud = await startDevCloud({ dir: path.join(dir, "devcloud"), logger: silentLogger() });
  cleanups.push(() => cloud.stop());
  ({ configFile } = await writeDemoConfig({
    dir: path.join(dir, "config"),
    endpointUrl: "opc.tcp://127.0.0.1:4840",
    devcloud: cloud,
    securityMode: "SignAndEncrypt",
    securityPolicy: "Aes256_Sha256_RsaPss",
    enrolment: { url: cloud.est.url, token: "not-used-here" },
  }));
  stateDir = path.join(dir, "state");
});
afterAll(() => runCleanups(cleanups));

function enroll(tokenFile: string) {
  return kerf(["enroll", "--token-file", tokenFile, "--config", configFile, "--state-dir", stateDir]);
}

function token(name: string, value: string): string {
  const file = path.join(dir, name);
  writeFileSync(file, value + "\n", { mode: 0o600 });
  return file;
}

describe("kerf enroll", () => {
  it("needs --token-file", async () => {
    const r = await kerf(["enroll", "--config", configFile, "--state-dir", stateDir]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/^kerf: enroll: --token-file is required/);
  });

  it("counts wrong tokens, locks out after 5 with the way to recover, and enrols with a new token from the devcloud", { timeout: 120_000 }, async () => {
    cloud.est.issueBootstrapToken(DEMO_INSTANCE);
    const first = await enroll(token("wrong-1", "guess-1"));
    expect(first.code).toBe(1);
    expect(first.stderr).toMatch(/^kerf: the EST server at https:\/\/127\.0\.0\.1:\d+\/\.well-known\/est refused \/simpleenroll with HTTP 401: wrong bootstrap token for instance 'kerf-demo': failed attempt 1 of 5; 4 attempts remain before lockout\. Ask the cloud administrator for a new bootstrap token/);
    expect(first.stderr).not.toMatch(/\n\s+at /);
    for (let i = 2; i <= 5; i++) {
      await bootstrapIdentity({ dir: path.join(dir, "elsewhere"), instance: DEMO_INSTANCE, url: cloud.est.url, tokenFile: token(`wrong-${i}`, `guess-${i}`), keyType: "ec", pins: [cloud.pin], caPem: cloud.ca.certPem, logger: silentLogger() }).catch(() => undefined);
    }
    const locked = await enroll(token("wrong-6", "guess-6"));
    expect(locked.code).toBe(1);
    expect(locked.stderr).toMatch(/HTTP 403: instance 'kerf-demo' is locked out after 5 failed bootstrap attempts; the cloud administrator must issue a new bootstrap token \(devcloud: kerf devcloud --issue-token kerf-demo\), then run kerf enroll --token-file FILE/);

    const issued = await kerf(["devcloud", "--issue-token", DEMO_INSTANCE, "--state-dir", dir]);
    expect(issued.code).toBe(0);
    const tokenFile = /^tokenFile: (\S+)$/m.exec(issued.stdout)![1]!;
    expect(statSync(tokenFile).mode & 0o777).toBe(0o600);
    const ok = await enroll(tokenFile);
    expect(ok.stderr).toBe("");
    expect(ok.code).toBe(0);
    expect(ok.stdout).toMatch(/^enrolled: instance kerf-demo \(instance id [0-9a-f]{32}\)\n {2}certificate: .*client\.pem\n {2}valid until: \d{4}-/);
    expect(statSync(path.join(stateDir, "identity", "client.key")).mode & 0o777).toBe(0o600);
    expect(cloud.est.counts.enrolled).toBe(1);
    // Enrolled already: the next run keeps the certificate and spends no token.
    const again = await enroll(token("spare", cloud.est.issueBootstrapToken(DEMO_INSTANCE)));
    expect(again.code).toBe(0);
    expect(cloud.est.counts.enrolled).toBe(1);
  });
});

describe("kerf run", () => {
  it("enrols on its first start with the token file of cloud.enrolment, and shows the certificate in health.json", { timeout: 60_000 }, async () => {
    const runState = path.join(dir, "run-state");
    const enrolled = cloud.est.counts.enrolled;
    writeFileSync(path.join(dir, "config", "bootstrap.token"), cloud.est.issueBootstrapToken(DEMO_INSTANCE) + "\n", { mode: 0o600 });
    const k = startKerf(["run", "--config", configFile, "--state-dir", runState]);
    try {
      const health = await waitFor("health.json with the certificate", () => {
        const file = path.join(runState, "health.json");
        const h = existsSync(file) ? (JSON.parse(readFileSync(file, "utf8")) as HealthReport) : null;
        return h?.certificate ? h : false;
      }, 45_000);
      expect(cloud.est.counts.enrolled).toBe(enrolled + 1);
      const cert = new X509Certificate(readFileSync(path.join(runState, "identity", "client.pem"), "utf8"));
      expect(health.certificate).toMatchObject({ notAfter: new Date(cert.validTo).toISOString(), renewals: 0, lastRenewalError: null, expired: false });
      expect(health.certificate!.instanceId).toBe(readFileSync(path.join(runState, "identity", "instance-id"), "utf8").trim());
      expect(statSync(path.join(runState, "identity", "client.key")).mode & 0o777).toBe(0o600);
    } finally {
      k.child.kill("SIGTERM");
      await k.exited;
    }
  });
});
