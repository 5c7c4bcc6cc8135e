import { spawnSync } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createDevCa, type DevCa } from "../../src/certs/devca.ts";
import { publicKeyPin, spkiPin, validatePins } from "../../src/certs/pins.ts";
import { x509 } from "../../src/certs/x509.ts";
import { tempDir } from "../uplink/helpers.ts";

let ca: DevCa;
let remove: () => Promise<void>;
beforeAll(async () => {
  const tmp = await tempDir("kerf-pins-");
  remove = tmp.remove;
  ca = await createDevCa(tmp.dir);
});
afterAll(() => remove());

/** RFC 7469 pin the way operators compute it: openssl x509 -pubkey | openssl pkey -pubin -outform der | openssl dgst -sha256 -binary | base64. */
function opensslPin(certPem: string): string | null {
  if (spawnSync("openssl", ["version"]).status !== 0) return null;
  const run = (args: string[], input: Buffer | string) => {
    const r = spawnSync("openssl", args, { input });
    if (r.status !== 0) throw new Error(`openssl ${args.join(" ")}: ${r.stderr.toString()}`);
    return r.stdout;
  };
  const pub = run(["x509", "-pubkey", "-noout"], certPem);
  const der = run(["pkey", "-pubin", "-outform", "der"], pub);
  const digest = run(["dgst", "-sha256", "-binary"], der);
  return `sha256/${digest.toString("base64")}`;
}

/** The same value from a second, independent parser: @peculiar/x509's SubjectPublicKeyInfo bytes. */
async function peculiarPin(certPem: string): Promise<string> {
  const spki = new x509.X509Certificate(certPem).publicKey.rawData;
  return `sha256/${Buffer.from(await crypto.subtle.digest("SHA-256", spki)).toString("base64")}`;
}

describe("spkiPin", () => {
  for (const keyType of ["ec", "rsa"] as const) {
    it(`gives the RFC 7469 value for an ${keyType.toUpperCase()} key`, async () => {
      const { certPem, keyPem } = await ca.issueServerCert({ dnsNames: ["localhost"], keyType });
      const pin = spkiPin(certPem);
      expect(pin).toMatch(/^sha256\/[A-Za-z0-9+/]{43}=$/);
      expect(pin).toBe(await peculiarPin(certPem));
      const fromOpenssl = opensslPin(certPem);
      if (fromOpenssl !== null) expect(pin).toBe(fromOpenssl);
      expect(publicKeyPin(keyPem)).toBe(pin);
    });
  }

  it("is not the hash of the bare EC point (what a TLS peer certificate's pubkey holds)", async () => {
    const { certPem } = await ca.issueServerCert({ dnsNames: ["localhost"] });
    const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
    const point = spki.subarray(spki.length - 65);
    expect(point[0]).toBe(0x04);
    const pointHash = `sha256/${Buffer.from(await crypto.subtle.digest("SHA-256", point)).toString("base64")}`;
    expect(spkiPin(certPem)).not.toBe(pointHash);
  });

  it("accepts PEM, DER, a Node X509Certificate and a TLS peer certificate alike", async () => {
    const { certPem } = await ca.issueServerCert({ dnsNames: ["localhost"] });
    const cert = new X509Certificate(certPem);
    const pin = spkiPin(certPem);
    expect(spkiPin(cert.raw)).toBe(pin);
    expect(spkiPin(cert)).toBe(pin);
    expect(spkiPin({ raw: cert.raw })).toBe(pin);
  });

  it("stays the same for a renewed certificate with the same key, and changes with the key", async () => {
    const first = await ca.issueServerCert({ dnsNames: ["localhost"] });
    const renewed = await ca.issueServerCert({ dnsNames: ["localhost", "cloud.example"], keyPem: first.keyPem });
    const rekeyed = await ca.issueServerCert({ dnsNames: ["localhost"] });
    expect(spkiPin(renewed.certPem)).toBe(spkiPin(first.certPem));
    expect(spkiPin(rekeyed.certPem)).not.toBe(spkiPin(first.certPem));
  });
});

describe("validatePins", () => {
  it("accepts well-formed pins and names every malformed one", () => {
    const good = "sha256/" + Buffer.alloc(32, 1).toString("base64");
    expect(validatePins([good])).toEqual([good]);
    expect(() => validatePins([good, "sha1/abc", "sha256/" + Buffer.alloc(31).toString("base64")])).toThrow(/invalid SPKI pin 'sha1\/abc', 'sha256\/A+=*'/);
  });
});
