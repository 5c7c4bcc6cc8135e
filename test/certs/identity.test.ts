import { X509Certificate, createPrivateKey, createPublicKey, generateKeyPairSync } from "node:crypto";
import { chmodSync, readdirSync, readFileSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pino } from "pino";
import type { Logger } from "../../src/log.ts";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDevCa, type DevCa } from "../../src/certs/devca.ts";
import { loadIdentityFiles } from "../../src/certs/files.ts";
import { DevCaEnroller, ensureIdentity, type Enroller } from "../../src/certs/identity.ts";
import { publicKeyPin, spkiPin } from "../../src/certs/pins.ts";
import { x509 } from "../../src/certs/x509.ts";
import { isKerfError } from "../../src/errors.ts";
import { tempDir } from "../uplink/helpers.ts";

let dir: string;
let idDir: string;
let remove: () => Promise<void>;
let ca: DevCa;
let logLines: string[];
let logger: Logger;

beforeEach(async () => {
  ({ dir, remove } = await tempDir("kerf-identity-"));
  idDir = path.join(dir, "identity");
  ca = await createDevCa(path.join(dir, "ca"));
  logLines = [];
  logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) }) as unknown as Logger;
});
afterEach(() => remove());

const day = 86400_000;

/** Counts calls and lets a test swap what the "enrolment service" returns. */
function enroller(respond?: (csrPem: string) => Promise<string>): Enroller & { calls: string[] } {
  const real = new DevCaEnroller(ca);
  const calls: string[] = [];
  return {
    calls,
    async enroll(csrPem) {
      calls.push(csrPem);
      return respond ? respond(csrPem) : real.enroll(csrPem);
    },
  };
}

async function refused(options: Parameters<typeof ensureIdentity>[0], pattern: RegExp) {
  const err = await ensureIdentity(options).then(() => null, (e: unknown) => e);
  expect(isKerfError(err, "CERT_ENROLMENT"), String(err)).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

describe("ensureIdentity", () => {
  it("generates an EC P-256 key on first start (0600), enrols with a CSR for the instance, and writes the certificate", async () => {
    const e = enroller();
    const id = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: e, logger });
    expect(statSync(id.keyFile).mode & 0o777).toBe(0o600);
    expect(statSync(idDir).mode & 0o777).toBe(0o700);
    expect(createPrivateKey(id.keyPem).asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const cert = new X509Certificate(id.certPem);
    expect(cert.checkPrivateKey(createPrivateKey(id.keyPem))).toBe(true);
    expect(cert.subject).toBe("CN=line-1");
    expect(id.notAfter.getTime()).toBe(new Date(cert.validTo).getTime());
    expect(readFileSync(id.certFile, "utf8")).toBe(id.certPem);
    // The CSR names the instance and carries its SAN URI (read by OID: the class form returns null).
    expect(e.calls).toHaveLength(1);
    const csr = new x509.Pkcs10CertificateRequest(e.calls[0]!);
    expect(csr.subject).toBe("CN=line-1");
    const san = csr.getExtension("2.5.29.17");
    expect(san && new x509.SubjectAlternativeNameExtension(san.rawData).names.toJSON()).toEqual([{ type: "url", value: "urn:kerf:line-1" }]);
    // Only these files remain: the temp files of the atomic writes are gone.
    expect(readdirSync(idDir).sort()).toEqual(["client.key", "client.pem", "instance-id"]);
    // The instance id is recorded, derived from the first key's SPKI.
    expect(id.instanceId).toMatch(/^[0-9a-f]{32}$/);
    expect(readFileSync(path.join(idDir, "instance-id"), "utf8").trim()).toBe(id.instanceId);
  });

  it("reuses key and certificate on the next start without enrolling", async () => {
    const e = enroller();
    const first = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: e, logger });
    const second = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: e, logger });
    expect(second).toEqual(first);
    expect(e.calls).toHaveLength(1);
    // Without an enroller too: nothing needs issuing.
    expect((await ensureIdentity({ dir: idDir, instance: "line-1", logger })).certPem).toBe(first.certPem);
  });

  it("never writes the private key to the log", async () => {
    const id = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: enroller(), logger });
    const keyBody = id.keyPem.replace(/-----[^-]+-----|\s/g, "");
    const log = logLines.join("");
    expect(logLines.length).toBeGreaterThan(0);
    expect(log).not.toContain("PRIVATE KEY");
    expect(log).not.toContain(keyBody.slice(20, 60));
    expect(log).toContain(publicKeyPin(id.keyPem));
  });

  it("refuses a certificate for another key, writes nothing, and keeps the instance key", async () => {
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }) as string;
    const e = enroller(() => ca.issueClientCert({ instance: "line-1", publicKeyPem: other }));
    await refused({ dir: idDir, instance: "line-1", enroller: e, logger }, /unusable certificate for instance 'line-1': .*for another key/);
    expect(readdirSync(idDir).sort()).toEqual(["client.key", "instance-id"]);
    const key = readFileSync(path.join(idDir, "client.key"), "utf8");
    // The next attempt uses the same key.
    const id = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: enroller(), logger });
    expect(id.keyPem).toBe(key);
  });

  it("refuses a certificate for another instance", async () => {
    const e = enroller(async (csrPem) => ca.issueClientCert({ instance: "line-2", csrPem }));
    await refused({ dir: idDir, instance: "line-1", enroller: e, logger }, /names 'line-2'.*expected CN=line-1/);
  });

  it("refuses an expired or not-yet-valid certificate, and one without clientAuth", async () => {
    const expired = enroller(async (csrPem) => ca.issueClientCert({ instance: "line-1", csrPem, notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) }));
    await refused({ dir: idDir, instance: "line-1", enroller: expired, logger }, /expired on/);
    const future = enroller(async (csrPem) => ca.issueClientCert({ instance: "line-1", csrPem, notBefore: new Date(Date.now() + day) }));
    await refused({ dir: idDir, instance: "line-1", enroller: future, logger }, /not valid before/);
    const serverOnly = enroller(async () => (await ca.issueServerCert({ dnsNames: ["line-1"], keyPem: readFileSync(path.join(idDir, "client.key"), "utf8") })).certPem);
    await refused({ dir: idDir, instance: "line-1", enroller: serverOnly, logger }, /names 'CN=line-1'|does not allow TLS client authentication/);
  });

  it("reports an enrolment failure and a missing enroller clearly", async () => {
    await refused({ dir: idDir, instance: "line-1", enroller: enroller(() => Promise.reject(new Error("connect ECONNREFUSED"))), logger }, /enrolment of instance 'line-1' failed: connect ECONNREFUSED/);
    await refused({ dir: idDir, instance: "line-1", logger }, /no usable instance certificate in .*client\.pem and no enroller configured/);
  });

  it("enrols again with the same key when the stored certificate has expired (the pin of the key stays)", async () => {
    const { keyPem, certFile } = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: enroller(), logger });
    // Plant an expired certificate for our key, as if it had aged on disk.
    const publicKeyPem = createPublicKey(keyPem).export({ type: "spki", format: "pem" }) as string;
    writeFileSync(certFile, await ca.issueClientCert({ instance: "line-1", publicKeyPem, notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) }));
    const e = enroller();
    const id = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: e, logger });
    expect(e.calls).toHaveLength(1);
    expect(id.keyPem).toBe(keyPem);
    expect(spkiPin(id.certPem)).toBe(publicKeyPin(keyPem));
    expect(id.notAfter.getTime()).toBeGreaterThan(Date.now());
  });

  it("generates an RSA-2048 key when keyType is rsa", async () => {
    const id = await ensureIdentity({ dir: idDir, instance: "line-1", keyType: "rsa", enroller: enroller(), logger });
    const key = createPrivateKey(id.keyPem);
    expect(key.asymmetricKeyType).toBe("rsa");
    expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
    expect(statSync(id.keyFile).mode & 0o777).toBe(0o600);
    expect(new X509Certificate(id.certPem).checkPrivateKey(key)).toBe(true);
  });

  it("tightens a key file that others can read to 0600", async () => {
    await ensureIdentity({ dir: idDir, instance: "line-1", enroller: enroller(), logger });
    chmodSync(path.join(idDir, "client.key"), 0o644);
    await ensureIdentity({ dir: idDir, instance: "line-1", logger });
    expect(statSync(path.join(idDir, "client.key")).mode & 0o777).toBe(0o600);
  });
});

describe("loadIdentityFiles", () => {
  it("loads a matching pair and refuses a mismatched or missing one, naming the files", async () => {
    const id = await ensureIdentity({ dir: idDir, instance: "line-1", enroller: enroller(), logger });
    expect((await loadIdentityFiles(id.certFile, id.keyFile)).certPem).toBe(id.certPem);
    const otherKey = path.join(dir, "other.key");
    writeFileSync(otherKey, generateKeyPairSync("ec", { namedCurve: "P-256" }).privateKey.export({ type: "pkcs8", format: "pem" }));
    const mismatch = await loadIdentityFiles(id.certFile, otherKey).catch((e: unknown) => e);
    expect(isKerfError(mismatch, "CERT_KEY_MISMATCH")).toBe(true);
    expect((mismatch as Error).message).toContain(otherKey);
    expect((mismatch as Error).message).toMatch(/for another key/);
    const missing = await loadIdentityFiles(path.join(dir, "nope.pem"), id.keyFile).catch((e: unknown) => e);
    expect(isKerfError(missing, "CERT_FILE")).toBe(true);
    expect((missing as Error).message).toMatch(/cannot read the certificate file .*nope\.pem: ENOENT/);
  });
});
