import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { Agent } from "../../src/agent/agent.ts";
import { judgeHealth } from "../../src/agent/health.ts";
import { slotFiles } from "../../src/opcua/trust/app-cert.ts";
import { loadConfig } from "../../src/config/load.ts";
import { setupDemo } from "../../src/demo/setup.ts";
import { silentLogger } from "../../src/log.ts";
import { tempDir, waitFor } from "../helpers/env.ts";
import { makeAppCert } from "../opcua/trust/certs.ts";
import { capturingLogger, kerf, WARN } from "../opcua/trust/helpers.ts";

const DAY = 86_400_000;
const ERROR = 50;
const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c().catch(() => undefined);
});

/**
 * The demo's simulator and devcloud, with the connector's application certificate replaced by one
 * valid from `notBefore` to `notAfter` (trusted by the simulator), and an agent logging into `lines`.
 */
async function connectorWithCertificate(notBefore: Date, notAfter: Date) {
  const tmp = await tempDir();
  cleanups.push(tmp.cleanup);
  const { logger, lines } = capturingLogger();
  const demo = await setupDemo({ stateDir: tmp.dir, logger: silentLogger() });
  cleanups.push(() => demo.stop());
  const stateDir = demo.connectorStateDir;
  const current = slotFiles(path.join(stateDir, "pki"), "current");
  const cert = await makeAppCert({ subject: "CN=kerf kerf-demo, O=Kerf", applicationUri: "urn:kerf:kerf-demo", dns: ["localhost"], notBefore, notAfter });
  mkdirSync(path.dirname(current.certificateFile), { recursive: true });
  writeFileSync(current.certificateFile, cert.certPem);
  writeFileSync(current.privateKeyFile, cert.keyPem, { mode: 0o600 });
  await demo.simulator.trustClientCertificate(cert.der);
  const agent = new Agent({ loaded: await loadConfig(demo.configFile), stateDir, logger });
  cleanups.push(() => agent.stop());
  await agent.start();
  return { demo, agent, stateDir, lines, cert };
}

describe("the expiry of the connector's OPC UA application certificate", () => {
  it("within 30 days: a WARN with the days left and the command, a health warning; the connector stays healthy and connects", async () => {
    const now = Date.now();
    const { agent, stateDir, lines, cert } = await connectorWithCertificate(new Date(now - 700 * DAY), new Date(now + 10 * DAY - 3_600_000));
    const warning = lines.find((l) => l.level === WARN && l.msg.includes("application certificate"));
    expect(warning?.msg).toContain(`(thumbprint ${cert.thumbprint}) expires in 9 days`);
    expect(warning?.msg).toContain(`run kerf pki renew --state-dir ${stateDir} and trust the thumbprint it prints on each machine`);
    expect(warning?.daysLeft).toBe(9);

    const verdict = judgeHealth(stateDir);
    expect(verdict.status).toBe("healthy");
    expect(verdict.reason).toMatch(/^ok, with warnings: opcua certificate: .* expires in 9 days/);
    expect(verdict.report?.opcuaCertificate).toMatchObject({ thumbprint: cert.thumbprint, daysLeft: 9, expired: false });
    await waitFor("connected", () => agent.sessions[0]?.state === "connected", 30_000);
  });

  it("expired: a clear error at connect with the fix, unhealthy; kerf pki renew and trusting the new certificate bring it back", { timeout: 120_000 }, async () => {
    const now = Date.now();
    const { demo, agent, stateDir, lines } = await connectorWithCertificate(new Date(now - 400 * DAY), new Date(now - DAY));
    expect(lines.some((l) => l.level === ERROR && /application certificate \(thumbprint \w+\) expired on/.test(l.msg))).toBe(true);
    const session = agent.sessions[0]!;
    const failed = await waitFor("a refused attempt", () => session.health().lastErrorCode ?? undefined, 30_000);
    expect(failed).toBe("OPCUA_OWN_CERT_EXPIRED");
    expect(session.health().lastError).toContain(`the connector's OPC UA application certificate ${slotFiles(path.join(stateDir, "pki"), "current").certificateFile}`);
    expect(session.health().lastError).toContain(`make a new one with: kerf pki renew --state-dir ${stateDir}, then trust the thumbprint it prints on the machine`);
    const verdict = judgeHealth(stateDir);
    expect(verdict.status).toBe("unhealthy");
    expect(verdict.reason).toContain("(code OPCUA_OWN_CERT_EXPIRED)");

    const renewed = await kerf("pki", "renew", "--state-dir", stateDir);
    expect(renewed.code).toBe(0);
    const thumbprint = /thumbprint \(SHA-1\) +(\w+)/.exec(renewed.stdout)![1]!;
    const next = slotFiles(path.join(stateDir, "pki"), "next");
    await demo.simulator.trustClientCertificate(readFileSync(next.certificateFile.replace(/\.pem$/, ".der")));
    await waitFor("connected with the renewed certificate", () => session.state === "connected", 60_000);
    await waitFor("promoted", () => agent.health().opcuaCertificate?.thumbprint === thumbprint, 10_000);
    expect(agent.health().problems).toEqual([]);
  });
});
