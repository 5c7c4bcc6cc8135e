import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/log.ts";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import { describeConnectFailure } from "../../../src/opcua/trust/explain.ts";
import type { Message } from "../../../src/message.ts";
import { waitFor } from "../../helpers/env.ts";
import { makeAppCert, TestCa } from "./certs.ts";
import { bench, capturingLogger, cleanupList, connectAndCheck, kerf, simulator, spec, WARN } from "./helpers.ts";

const cleanups = cleanupList();
afterEach(cleanups.run);
const day = 24 * 3600 * 1000;

/** Runs a real session until it has failed once, and returns its reason. */
async function sessionError(s: ReturnType<typeof spec>, pki: Awaited<ReturnType<typeof bench>>["pki"]): Promise<{ error: string; messages: Message[] }> {
  const messages: Message[] = [];
  const session = new MachineSession({ spec: s, pki, sink: { write: (m) => messages.push(...m) }, logger: silentLogger(), backoff: { initialMs: 200, maxMs: 1000 } });
  session.start();
  try {
    const error = await waitFor("a refused attempt", () => session.health().lastError ?? undefined, 15_000);
    expect(session.state).not.toBe("connected");
    return { error, messages };
  } finally {
    await session.stop();
  }
}

describe("node-opcua's checks on a trusted server certificate", () => {
  it("refuses one that has expired, and one not yet valid", async () => {
    const b = await bench(cleanups);
    const now = Date.now();
    const expired = await makeAppCert({ applicationUri: "urn:test:expired", ips: ["127.0.0.1"], notBefore: new Date(now - 30 * day), notAfter: new Date(now - day) });
    const early = await makeAppCert({ applicationUri: "urn:test:early", ips: ["127.0.0.1"], notBefore: new Date(now + day), notAfter: new Date(now + 30 * day) });
    for (const cert of [expired, early]) await b.pki.certificateManager.trustCertificate(cert.der);
    const [a, c] = await Promise.all([simulator(b, cleanups, "expired", expired), simulator(b, cleanups, "early", early)]);

    const first = await sessionError(spec(a), b.pki);
    expect(first.error).toMatch(new RegExp(`trusted but not valid now \\(thumbprint ${expired.thumbprint}.*expired on`));
    expect(first.messages.some((m) => m.kind === "data")).toBe(false);
    const second = await sessionError(spec(c), b.pki);
    expect(second.error).toMatch(/it is not valid before/);

    // The explanation names the certificate and the date.
    const { error } = await connectAndCheck(spec(a), b.pki);
    expect(await describeConnectFailure(error, spec(a), b.pki)).toMatch(new RegExp(`trusted but not valid now \\(thumbprint ${expired.thumbprint}.*expired on`));
    const late = await connectAndCheck(spec(c), b.pki);
    expect(await describeConnectFailure(late.error, spec(c), b.pki)).toMatch(/it is not valid before/);
  });

  it("builds chains through a CA added with kerf trust add-issuer, needs its CRL, and refuses a certificate the CRL revokes", async () => {
    const b = await bench(cleanups);
    const ca = await TestCa.create();
    const leaf = await makeAppCert({ applicationUri: "urn:test:ca-issued", ips: ["127.0.0.1"], issuer: ca });
    const sim = await simulator(b, cleanups, "ca", leaf);
    const s = spec(sim);
    const files = { ca: path.join(b.dir, "ca.pem"), empty: path.join(b.dir, "empty.crl"), revoking: path.join(b.dir, "revoking.crl") };
    await writeFile(files.ca, ca.certPem);
    await writeFile(files.empty, await ca.crl());
    await writeFile(files.revoking, await ca.crl([leaf]));

    // Without the CA, the chain is incomplete.
    const unknown = await connectAndCheck(s, b.pki);
    expect(await describeConnectFailure(unknown.error, s, b.pki)).toMatch(/which is not in the trust store.*kerf trust add-issuer/);

    const added = await kerf("trust", "add-issuer", files.ca, "--trusted", "--state-dir", b.stateDir);
    expect(added.code).toBe(0);
    expect(added.stdout).toMatch(/added issuer .*Kerf Test Plant CA.*trusted/);
    expect(added.stdout).toMatch(/refuses certificates of a CA without a CRL/);
    // Without a CRL, revocation is unknown: refused.
    await waitFor("the CA in the running trust store", async () => String(await b.pki.certificateManager.verifyCertificate(leaf.der, { acceptCertificateWithValidIssuerChain: true })) === "BadCertificateRevocationUnknown", 5_000);
    const noCrl = await sessionError(s, b.pki);
    expect(noCrl.error).toMatch(/no CRL.*kerf trust add-crl/);

    expect((await kerf("trust", "add-crl", files.empty, "--state-dir", b.stateDir)).code).toBe(0);
    const messages: Message[] = [];
    const session = new MachineSession({ spec: s, pki: b.pki, sink: { write: (m) => messages.push(...m) }, logger: silentLogger(), backoff: { initialMs: 200, maxMs: 1000 } });
    cleanups.add(() => session.stop());
    session.start();
    await waitFor("connected through the CA", () => session.state === "connected", 15_000);
    await session.stop();

    const revoked = await kerf("trust", "add-crl", files.revoking, "--state-dir", b.stateDir);
    expect(revoked.code).toBe(0);
    expect(revoked.stdout).toMatch(/1 revoked.*replaces 1 older one/);
    // The running process's trust store picks the new CRL up: no restart.
    await waitFor("revoked in the running trust store", async () => String(await b.pki.certificateManager.verifyCertificate(leaf.der, { acceptCertificateWithValidIssuerChain: true })) === "BadCertificateRevoked", 5_000);
    const refused = await sessionError(s, b.pki);
    expect(refused.error).toMatch(/has been revoked by its CA.s CRL/);
    const { error } = await connectAndCheck(s, b.pki);
    expect(await describeConnectFailure(error, s, b.pki)).toMatch(new RegExp(`revoked by its CA's CRL \\(thumbprint ${leaf.thumbprint}`));

    const listed = await kerf("trust", "list", "--state-dir", b.stateDir);
    expect(listed.stdout).toMatch(/CRLs \(1\)\n {2}[0-9a-f]{40} {2}issuer CN=Kerf Test Plant CA, O=Kerf Tests\n {6}1 revoked/);
  });
});

describe("our checks after connecting: applicationUri and host name", () => {
  it("refuses a certificate whose applicationUri is not the one the server announces", async () => {
    const b = await bench(cleanups);
    const cert = await makeAppCert({ applicationUri: "urn:test:real-machine", ips: ["127.0.0.1"] });
    await b.pki.certificateManager.trustCertificate(cert.der);
    const sim = await simulator(b, cleanups, "impostor", cert, { applicationUri: "urn:test:other-machine" });
    const { error, refusal } = await connectAndCheck(spec(sim), b.pki);
    expect(error).toBeUndefined();
    expect(refusal).toBe(`the server certificate ${cert.thumbprint} (CN=Test Machine, O=Kerf Tests) names the application urn:test:real-machine, but the server announces urn:test:other-machine; the certificate does not belong to this server`);
  });

  it("refuses a certificate that does not name the host, and accepts it with allowHostnameMismatch and a warning on each connect", async () => {
    const b = await bench(cleanups);
    const cert = await makeAppCert({ applicationUri: "urn:test:legacy", dns: ["plc.example"], ips: ["10.1.2.3"] });
    await b.pki.certificateManager.trustCertificate(cert.der);
    const sim = await simulator(b, cleanups, "legacy", cert);

    const strict = await connectAndCheck(spec(sim), b.pki);
    expect(strict.error).toBeUndefined();
    expect(strict.refusal).toMatch(/does not name the host 127\.0\.0\.1 in its subjectAltName \(it names: plc\.example, 10\.1\.2\.3\); connect by one of those names, or set allowHostnameMismatch: true/);

    const { logger, lines } = capturingLogger();
    for (let i = 0; i < 2; i++) {
      const lax = await connectAndCheck(spec(sim, { allowHostnameMismatch: true }), b.pki, logger);
      expect(lax).toEqual({ refusal: undefined });
    }
    const warnings = lines.filter((l) => l.level === WARN && /accepted because allowHostnameMismatch is set/.test(l.msg));
    expect(warnings).toHaveLength(2);
    expect(warnings[0]).toMatchObject({ thumbprint: cert.thumbprint, host: "127.0.0.1" });

    // A name that matches passes: "localhost" is not in this certificate, 127.0.0.1 is in the simulator's own.
    const own = await simulator(b, cleanups, "own");
    await b.pki.certificateManager.trustCertificate(own.certificateDer);
    expect(await connectAndCheck(spec(own), b.pki)).toEqual({ refusal: undefined });
  });

  it("kerf browse applies the same checks at its connect", async () => {
    const b = await bench(cleanups);
    const cert = await makeAppCert({ applicationUri: "urn:test:legacy", dns: ["plc.example"] });
    await b.pki.certificateManager.trustCertificate(cert.der);
    const sim = await simulator(b, cleanups, "legacy", cert);
    const args = ["browse", sim.endpointUrl, "--state-dir", b.stateDir, "--root", "nsu=urn:kerf:simulator;s=Machine", "--depth", "1"];
    const [refused, lax] = await Promise.all([kerf(...args), kerf(...args, "--allow-hostname-mismatch")]);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^kerf: machine \(opc\.tcp:\/\/127\.0\.0\.1:\d+\): the server certificate [0-9a-f]{40} .* does not name the host 127\.0\.0\.1/);
    expect(refused.stdout).toBe("");
    expect(lax.code).toBe(0);
    expect(lax.stderr).toMatch(/accepted because allowHostnameMismatch is set/);
    expect(lax.stdout).toMatch(/^machines:$/m);
  });
});
