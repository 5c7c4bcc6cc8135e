import { spawnSync } from "node:child_process";
import { X509Certificate, generateKeyPairSync } from "node:crypto";
import { readFileSync, statSync, writeFileSync, rmSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { createDevCa } from "../../src/certs/devca.ts";
import { createCsr } from "../../src/certs/identity.ts";
import { isKerfError, type KerfErrorCode } from "../../src/errors.ts";
import { tempDir } from "../uplink/helpers.ts";

let dir: string;
let remove: () => Promise<void>;
beforeEach(async () => ({ dir, remove } = await tempDir("kerf-devca-")));
afterEach(() => remove());

const day = 86400_000;
const ekuServer = "1.3.6.1.5.5.7.3.1";
const ekuClient = "1.3.6.1.5.5.7.3.2";

function ecKey() {
  const { privateKey, publicKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
  return { keyPem: privateKey.export({ type: "pkcs8", format: "pem" }) as string, publicKeyPem: publicKey.export({ type: "spki", format: "pem" }) as string };
}

async function rejects(p: Promise<unknown>, code: KerfErrorCode, pattern: RegExp) {
  const err = await p.then(() => null, (e: unknown) => e);
  expect(isKerfError(err, code), String(err)).toBe(true);
  expect((err as Error).message).toMatch(pattern);
}

describe("createDevCa", () => {
  it("creates an EC P-256 CA with a 0600 key, and loads the same CA again", async () => {
    const caDir = path.join(dir, "ca");
    const ca = await createDevCa(caDir);
    expect(statSync(path.join(caDir, "ca.key")).mode & 0o777).toBe(0o600);
    expect(statSync(caDir).mode & 0o777).toBe(0o700);
    const cert = new X509Certificate(readFileSync(ca.certFile));
    expect(cert.ca).toBe(true);
    expect(cert.publicKey.asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    expect(cert.verify(cert.publicKey)).toBe(true);
    const again = await createDevCa(caDir);
    expect(again.certPem).toBe(ca.certPem);
    expect(again.keyPem).toBe(ca.keyPem);
  });

  it("refuses a CA directory with only one of its two files, or a key that is not the certificate's", async () => {
    const caDir = path.join(dir, "ca");
    await createDevCa(caDir);
    const key = readFileSync(path.join(caDir, "ca.key"), "utf8");
    rmSync(path.join(caDir, "ca.key"));
    await rejects(createDevCa(caDir), "CERT_FILE", /incomplete: found ca\.pem without ca\.key/);
    writeFileSync(path.join(caDir, "ca.key"), ecKey().keyPem);
    await rejects(createDevCa(caDir), "CERT_KEY_MISMATCH", /ca\.key is not the key of ca\.pem/);
    writeFileSync(path.join(caDir, "ca.key"), key);
    await expect(createDevCa(caDir)).resolves.toBeTruthy();
  });
});

describe("issueServerCert", () => {
  for (const keyType of ["ec", "rsa"] as const) {
    it(`issues a ${keyType.toUpperCase()} server certificate for the given names, signed by the CA`, async () => {
      const ca = await createDevCa(dir);
      const issued = await ca.issueServerCert({ dnsNames: ["localhost"], ips: ["127.0.0.1"], keyType });
      const cert = new X509Certificate(issued.certPem);
      expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
      expect(cert.publicKey.asymmetricKeyType).toBe(keyType);
      expect(cert.checkHost("localhost")).toBe("localhost");
      expect(cert.checkIP("127.0.0.1")).toBe("127.0.0.1");
      expect(cert.checkHost("other.example")).toBeUndefined();
      expect(cert.keyUsage).toEqual([ekuServer]);
      expect(cert.ca).toBe(false);
      expect(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(issued.keyPem))).toBe(true);
      expect(issued.chainPem).toBe(issued.certPem);
    });
  }

  it("honours notBefore and notAfter, so tests can make expired and not-yet-valid certificates", async () => {
    const ca = await createDevCa(dir);
    const expired = new X509Certificate((await ca.issueServerCert({ dnsNames: ["a"], notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) })).certPem);
    expect(new Date(expired.validTo).getTime()).toBeLessThan(Date.now());
    const future = new X509Certificate((await ca.issueServerCert({ dnsNames: ["a"], notBefore: new Date(Date.now() + day) })).certPem);
    expect(new Date(future.validFrom).getTime()).toBeGreaterThan(Date.now());
  });

  it("refuses a certificate without any name", async () => {
    const ca = await createDevCa(dir);
    await rejects(ca.issueServerCert({}), "CERT_REQUEST_INVALID", /at least one DNS name or IP/);
  });

  it("builds CA → intermediate → leaf chains that openssl verifies", async () => {
    const ca = await createDevCa(dir);
    const intermediate = await ca.createIntermediate();
    const leaf = await intermediate.issueServerCert({ dnsNames: ["localhost"] });
    const viaIssuer = await ca.issueServerCert({ dnsNames: ["localhost"], issuer: intermediate });
    const caCert = new X509Certificate(ca.certPem);
    const interCert = new X509Certificate(intermediate.certPem);
    expect(interCert.ca).toBe(true);
    expect(interCert.verify(caCert.publicKey)).toBe(true);
    for (const issued of [leaf, viaIssuer]) {
      expect(new X509Certificate(issued.certPem).verify(interCert.publicKey)).toBe(true);
      expect(issued.chainPem).toBe(issued.certPem + intermediate.certPem);
    }
    writeFileSync(path.join(dir, "leaf.pem"), leaf.certPem);
    writeFileSync(path.join(dir, "inter.pem"), intermediate.certPem);
    const r = spawnSync("openssl", ["verify", "-CAfile", ca.certFile, "-untrusted", path.join(dir, "inter.pem"), path.join(dir, "leaf.pem")]);
    if (r.error === undefined) expect(r.stdout.toString()).toContain("leaf.pem: OK");
  });
});

describe("issueClientCert", () => {
  it("issues CN=<instance>, SAN URI urn:kerf:<instance>, EKU clientAuth, from a public key", async () => {
    const ca = await createDevCa(dir);
    const key = ecKey();
    const cert = new X509Certificate(await ca.issueClientCert({ instance: "line-1", publicKeyPem: key.publicKeyPem }));
    expect(cert.subject).toBe("CN=line-1");
    expect(cert.subjectAltName).toBe("URI:urn:kerf:line-1");
    expect(cert.keyUsage).toEqual([ekuClient]);
    expect(cert.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(key.keyPem))).toBe(true);
  });

  it("issues from a CSR after checking its signature, and refuses a tampered one", async () => {
    const ca = await createDevCa(dir);
    const key = ecKey();
    const csrPem = await createCsr(key.keyPem, "line-1");
    const cert = new X509Certificate(await ca.issueClientCert({ instance: "line-1", csrPem }));
    expect(cert.checkPrivateKey((await import("node:crypto")).createPrivateKey(key.keyPem))).toBe(true);

    const der = Buffer.from(csrPem.replace(/-----[^-]+-----|\s/g, ""), "base64");
    der[der.length - 5]! ^= 0xff; // flip a byte of the signature
    const tampered = `-----BEGIN CERTIFICATE REQUEST-----\n${der.toString("base64")}\n-----END CERTIFICATE REQUEST-----\n`;
    await rejects(ca.issueClientCert({ instance: "line-1", csrPem: tampered }), "CERT_REQUEST_INVALID", /signature does not verify|not a valid PKCS#10/);
  });

  it("refuses instance names that cannot be a CN and a URN", async () => {
    const ca = await createDevCa(dir);
    for (const instance of ["", "a b", "x,CN=admin", "-lead", "a".repeat(65), "ü"]) {
      await rejects(ca.issueClientCert({ instance, publicKeyPem: ecKey().publicKeyPem }), "CERT_REQUEST_INVALID", /instance name .* is not valid/);
    }
  });
});
