import { describe, expect, it } from "vitest";
import { x509 } from "../../../src/certs/x509.ts";
import { certificateInfo, checkServerCertificate, parseCertificates } from "../../../src/opcua/trust/cert-checks.ts";
import { makeAppCert, TestCa } from "./certs.ts";

const url = (host: string) => ({ endpointUrl: `opc.tcp://${host}:4840`, securityMode: "SignAndEncrypt" as const });

describe("checkServerCertificate", () => {
  it("matches the host against DNS names (with wildcards) and IP addresses, v4 and v6, never the CN", async () => {
    const cert = await makeAppCert({ subject: "CN=plc.example", applicationUri: "urn:a", dns: ["saw.plant.example", "*.line1.example"], ips: ["10.0.0.5", "fd00::5"] });
    const ok = (host: string) => checkServerCertificate(url(host), { certificateDer: cert.der, applicationUri: "urn:a" });
    expect(ok("saw.plant.example")).toBeUndefined();
    expect(ok("SAW.plant.example")).toBeUndefined();
    expect(ok("edge.line1.example")).toBeUndefined();
    expect(ok("10.0.0.5")).toBeUndefined();
    expect(ok("[fd00::5]")).toBeUndefined();
    expect(ok("a.b.line1.example")).toMatch(/does not name the host a\.b\.line1\.example/);
    expect(ok("plc.example")).toMatch(/it names: saw\.plant\.example, \*\.line1\.example, 10\.0\.0\.5, fd00::5\)/);
    expect(ok("10.0.0.6")).toMatch(/does not name the host 10\.0\.0\.6/);
  });

  it("refuses a certificate without an applicationUri, or one whose key may not sign or encrypt, or not a server's", async () => {
    const base = { applicationUri: "urn:a", ips: ["127.0.0.1"] };
    const check = async (o: Partial<Parameters<typeof makeAppCert>[0]>, uri: string | null = "urn:a") =>
      checkServerCertificate(url("127.0.0.1"), { certificateDer: (await makeAppCert({ ...base, ...o })).der, applicationUri: uri });
    expect(await check({})).toBeUndefined();
    expect(await check({ keyUsage: x509.KeyUsageFlags.keyEncipherment })).toMatch(/does not allow digitalSignature/);
    expect(await check({ keyUsage: x509.KeyUsageFlags.digitalSignature })).toMatch(/neither keyEncipherment nor dataEncipherment/);
    expect(await check({}, null)).toMatch(/announces no applicationUri/);
    expect(await check({ extendedKeyUsage: [x509.ExtendedKeyUsage.clientAuth] })).toMatch(/extended key usage lacks serverAuth/);
    expect(await check({}, "urn:b")).toMatch(/names the application urn:a, but the server announces urn:b/);
    const ca = await TestCa.create();
    expect(checkServerCertificate(url("127.0.0.1"), { certificateDer: ca.der, applicationUri: "urn:a" })).toMatch(/no applicationUri \(URI\) in its subjectAltName/);
  });

  it("has nothing to check on a None channel, and refuses a secured one without a certificate", () => {
    expect(checkServerCertificate({ ...url("h"), securityMode: "None" }, { certificateDer: undefined, applicationUri: "urn:a" })).toBeUndefined();
    expect(checkServerCertificate(url("h"), { serverCertificate: null, server: { applicationUri: "urn:a" } })).toMatch(/sent no certificate/);
    expect(checkServerCertificate(url("h"), { certificateDer: Buffer.from("junk"), applicationUri: "urn:a" })).toMatch(/not an X\.509 certificate/);
  });
});

describe("certificate files", () => {
  it("reads PEM chains and DER, and names what a bad file is", async () => {
    const ca = await TestCa.create();
    const leaf = await makeAppCert({ applicationUri: "urn:a", issuer: ca });
    const chain = parseCertificates(Buffer.from(leaf.certPem + ca.certPem), "chain.pem");
    expect(chain.map((d) => certificateInfo(d).thumbprint)).toEqual([leaf.thumbprint, certificateInfo(ca.der).thumbprint]);
    expect(parseCertificates(leaf.der, "leaf.der")).toHaveLength(1);
    const info = certificateInfo(leaf.der);
    expect(info).toMatchObject({ subject: "CN=Test Machine, O=Kerf Tests", issuer: "CN=Kerf Test Plant CA, O=Kerf Tests", applicationUri: "urn:a", isCa: false, selfSigned: false });
    expect(certificateInfo(ca.der)).toMatchObject({ isCa: true, selfSigned: true });
    expect(() => parseCertificates(Buffer.from("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"), "key.pem")).toThrow(/key\.pem holds no PEM CERTIFICATE block/);
    expect(() => parseCertificates(Buffer.from("hello"), "hello.txt")).toThrow(/hello\.txt is neither a PEM nor a DER X\.509 certificate/);
    expect(() => parseCertificates(Buffer.from("hello"), "hello.txt")).toThrow(expect.objectContaining({ name: "KerfError", code: "CERT_MALFORMED" }));
  });
});
