/**
 * Renewal of the instance certificate while values flow: simulator, devcloud (its EST server
 * issuing short-lived certificates) and the connector in-process, as `kerf demo --cert-ttl`.
 */
import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync } from "node:fs";
import path from "node:path";
import type { TLSSocket } from "node:tls";
import { afterEach, describe, expect, it } from "vitest";
import type { Identity } from "../../src/certs/identity.ts";
import { checkSeries, DEMO_MACHINE, loadKey, startEnvironment, waitFor } from "../helpers/env.ts";

let env: Awaited<ReturnType<typeof startEnvironment>> | null = null;
afterEach(async () => {
  await env?.stop();
  env = null;
});

const serial = (pem: string) => new X509Certificate(pem).serialNumber;

describe("certificate renewal over EST", () => {
  it("renews at 2/3 of the lifetime while values stream: rotated in, then promoted on disk; nothing lost", { timeout: 120_000 }, async () => {
    env = await startEnvironment({ certTtlSeconds: 12, load: { count: 5, periodMs: 100 } });
    const { agent, demo } = env;
    const renewal = agent.renewal!;
    const first = renewal.identity;
    // Due at 2/3 of the lifetime (the default renewAt), as health says.
    const cert = new X509Certificate(first.certPem);
    const from = Date.parse(cert.validFrom);
    const due = from + (2 / 3) * (Date.parse(cert.validTo) - from);
    expect(Math.abs(Date.parse(agent.health().certificate!.nextRenewalAt!) - due)).toBeLessThanOrEqual(1);
    const renewed: Identity[] = [];
    renewal.on("renewed", (id: Identity) => renewed.push(id));
    await waitFor("two renewals", () => renewal.renewals >= 2, 60_000);
    const idDir = path.join(demo.connectorStateDir, "identity");
    // The identity in service is on disk, the staging folder is gone, and the key stayed (no rekey).
    expect(readFileSync(path.join(idDir, "client.pem"), "utf8")).toBe(renewal.identity.certPem);
    expect(existsSync(path.join(idDir, "next"))).toBe(false);
    expect(renewal.identity.keyPem).toBe(first.keyPem);
    expect(renewal.identity.instanceId).toBe(first.instanceId);
    expect(renewed.map((id) => serial(id.certPem))).toContain(serial(renewal.identity.certPem));
    // The cloud saw requests with each certificate: the rotation reached the data path.
    await waitFor("a request with the newest certificate", () => demo.devcloud.clientCertificates.has(serial(renewal.identity.certPem)), 30_000);
    expect(demo.devcloud.clientCertificates.has(serial(first.certPem))).toBe(true);
    expect(demo.devcloud.clientCertificates.has(serial(renewed[0]!.certPem))).toBe(true);
    const health = agent.health();
    expect(health.certificate).toMatchObject({ renewals: renewal.renewals, lastRenewalError: null, expired: false, instanceId: first.instanceId });
    expect(health.problems).toEqual([]);

    const final = await agent.stop({ drainMs: 5_000 });
    expect(final.buffer.droppedItems).toBe(0);
    expect(final.buffer.items).toBe(0);
    for (let i = 0; i < 5; i++) {
      const series = checkSeries(demo.devcloud.store.items(DEMO_MACHINE, loadKey(i)));
      expect(series.gaps, loadKey(i)).toEqual([]);
      expect(series.count).toBeGreaterThan(50);
    }
  });

  it("keeps the old certificate when renewal fails, says so in health, and retries with backoff until it succeeds", { timeout: 120_000 }, async () => {
    env = await startEnvironment({ certTtlSeconds: 30 });
    const { agent, demo } = env;
    const renewal = agent.renewal!;
    const first = renewal.identity;
    const certFile = path.join(demo.connectorStateDir, "identity", "client.pem");
    demo.devcloud.est.faults.failNext = 3;
    const seen: { error: string | null; warnings: string[]; problems: number; onDisk: string; inService: string }[] = [];
    renewal.on("failed", () => {
      const health = agent.health();
      seen.push({ error: health.certificate!.lastRenewalError, warnings: health.warnings.map((w) => `${w.code}: ${w.reason}`), problems: health.problems.length, onDisk: readFileSync(certFile, "utf8"), inService: renewal.identity.certPem });
    });
    await waitFor("a renewal after the failures", () => renewal.renewals >= 1, 60_000);
    expect(seen).toHaveLength(3);
    for (const s of seen) {
      expect(s.error).toMatch(/refused \/simplereenroll with HTTP 503/);
      // still healthy, but the operator is told before the certificate runs out
      expect(s.problems).toBe(0);
      expect(s.warnings).toEqual([expect.stringMatching(/^CERT_ENROLMENT: the instance certificate could not be renewed \(it expires in [\d.]+ days, on .*\): .*HTTP 503/)]);
      expect(s.onDisk).toBe(first.certPem);
      expect(s.inService).toBe(first.certPem);
    }
    expect(agent.health().certificate!.lastRenewalError).toBeNull();
    expect(agent.health().warnings).toEqual([]);
    expect(serial(renewal.identity.certPem)).not.toBe(serial(first.certPem));
    await waitFor("the renewed certificate on disk", () => readFileSync(certFile, "utf8") === renewal.identity.certPem, 30_000);
  });

  it.each(["after the handshake", "with HTTP 403"])("a renewed certificate that the cloud refuses (%s) is rotated back out; the old one carries on and the next renewal succeeds", { timeout: 120_000 }, async (how) => {
    env = await startEnvironment({ certTtlSeconds: 30, load: { count: 3, periodMs: 100 } });
    const { agent, demo } = env;
    const renewal = agent.renewal!;
    const first = renewal.identity;
    const certFile = path.join(demo.connectorStateDir, "identity", "client.pem");
    // The first certificate the EST server renews is one the ingest then refuses (as if revoked).
    let refused: string | null = null;
    demo.devcloud.est.faults.answer = (op, _csr, issued) => {
      if (op === "simplereenroll" && refused === null) {
        refused = serial(issued);
        if (how === "after the handshake") demo.devcloud.refusedClientSerials.add(refused);
      }
      return undefined;
    };
    demo.devcloud.faults.status = (req) => (how === "with HTTP 403" && refused !== null && (req.socket as TLSSocket).getPeerCertificate().serialNumber === refused ? 403 : undefined);
    const failures: string[] = [];
    renewal.on("failed", (err: Error) => failures.push(err.message));
    await waitFor("a renewal after the refused one", () => renewal.renewals >= 1, 90_000);
    expect(failures[0]).toBe("the cloud refused the renewed certificate; the previous one is back in service");
    expect(refused).not.toBeNull();
    expect(serial(renewal.identity.certPem)).not.toBe(refused);
    expect(serial(renewal.identity.certPem)).not.toBe(serial(first.certPem));
    await waitFor("the good renewal on disk", () => readFileSync(certFile, "utf8") === renewal.identity.certPem, 30_000);

    const final = await agent.stop({ drainMs: 5_000 });
    expect(final.buffer.droppedItems).toBe(0);
    for (let i = 0; i < 3; i++) expect(checkSeries(demo.devcloud.store.items(DEMO_MACHINE, loadKey(i))).gaps, loadKey(i)).toEqual([]);
  });

  it("an expired certificate makes the uplink unhealthy, with the last renewal error and the way back", { timeout: 120_000 }, async () => {
    env = await startEnvironment({ certTtlSeconds: 10 });
    const { agent, demo } = env;
    demo.devcloud.est.faults.failNext = 1_000_000;
    const notAfter = agent.renewal!.identity.notAfter.getTime();
    expect(agent.health().problems).toEqual([]);
    await waitFor("expiry", () => Date.now() > notAfter + 1_000 && agent.renewal!.health().lastRenewalError !== null, 60_000);
    const health = agent.health();
    expect(health.certificate).toMatchObject({ expired: true });
    expect(health.certificate!.daysToExpiry).toBeLessThanOrEqual(0);
    const problem = health.problems.find((p) => p.code === "CERT_EXPIRED");
    expect(problem?.reason).toMatch(/^the instance certificate expired on .*; last renewal error: .*HTTP 503.*; enrol again with a new bootstrap token: kerf enroll --token-file FILE$/);
  });
});
