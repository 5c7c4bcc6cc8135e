/**
 * Certificates made on purpose for the trust tests: RSA (node-opcua needs it), with the
 * dates, names and issuers each test needs. Real X.509, signed with WebCrypto.
 */
import { createHash, randomBytes } from "node:crypto";
import { mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { generateKeyPair, privateKeyToPem, x509, type CryptoKeyPair } from "../../../src/certs/x509.ts";

const day = 24 * 3600 * 1000;
const RSA_SHA256 = { name: "RSASSA-PKCS1-v1_5" };

export interface TestCert {
  der: Buffer;
  certPem: string;
  keyPem: string;
  thumbprint: string;
  serial: string;
}

export interface AppCertOptions {
  subject?: string;
  applicationUri: string;
  dns?: string[];
  ips?: string[];
  notBefore?: Date;
  notAfter?: Date;
  issuer?: TestCa;
  keyUsage?: number;
  extendedKeyUsage?: string[];
}

const APP_KEY_USAGE = x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.nonRepudiation | x509.KeyUsageFlags.keyEncipherment | x509.KeyUsageFlags.dataEncipherment;

/** An OPC UA application instance certificate, self-signed unless an issuer is given. */
export async function makeAppCert(o: AppCertOptions): Promise<TestCert> {
  const keys = await generateKeyPair("rsa");
  const now = Date.now();
  const subject = o.subject ?? "CN=Test Machine, O=Kerf Tests";
  const serial = serialNumber();
  const names = [{ type: "url" as const, value: o.applicationUri }, ...(o.dns ?? []).map((value) => ({ type: "dns" as const, value })), ...(o.ips ?? []).map((value) => ({ type: "ip" as const, value }))];
  const signer: CryptoKeyPair = o.issuer?.keys ?? keys;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial,
    subject,
    issuer: o.issuer?.cert.subject ?? subject,
    publicKey: keys.publicKey,
    signingKey: signer.privateKey,
    signingAlgorithm: RSA_SHA256,
    notBefore: o.notBefore ?? new Date(now - 60_000),
    notAfter: o.notAfter ?? new Date(now + 365 * day),
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(o.keyUsage ?? APP_KEY_USAGE, true),
      new x509.ExtendedKeyUsageExtension(o.extendedKeyUsage ?? [x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension(names),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
      await x509.AuthorityKeyIdentifierExtension.create(signer.publicKey),
    ],
  });
  return toTestCert(cert, await privateKeyToPem(keys.privateKey), serial);
}

/** An RSA root CA that issues application certificates and CRLs. */
export class TestCa {
  readonly cert: x509.X509Certificate;
  readonly keys: CryptoKeyPair;
  readonly certPem: string;
  readonly der: Buffer;

  private constructor(cert: x509.X509Certificate, keys: CryptoKeyPair) {
    this.cert = cert;
    this.keys = keys;
    this.certPem = cert.toString("pem") + "\n";
    this.der = Buffer.from(cert.rawData);
  }

  static async create(name = "CN=Kerf Test Plant CA, O=Kerf Tests"): Promise<TestCa> {
    const keys = await generateKeyPair("rsa");
    const now = Date.now();
    const cert = await x509.X509CertificateGenerator.createSelfSigned({
      serialNumber: serialNumber(),
      name,
      keys,
      signingAlgorithm: RSA_SHA256,
      notBefore: new Date(now - 60_000),
      notAfter: new Date(now + 10 * 365 * day),
      extensions: [
        new x509.BasicConstraintsExtension(true, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
        await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(keys.publicKey),
      ],
    });
    return new TestCa(cert, keys);
  }

  /** A CRL revoking the given certificates (none: an empty CRL, which says "nothing revoked"). */
  async crl(revoked: TestCert[] = []): Promise<string> {
    const now = Date.now();
    const crl = await x509.X509CrlGenerator.create({
      issuer: this.cert.subject,
      thisUpdate: new Date(now - 60_000),
      nextUpdate: new Date(now + 30 * day),
      signingKey: this.keys.privateKey,
      signingAlgorithm: RSA_SHA256,
      entries: revoked.map((c) => ({ serialNumber: c.serial, revocationDate: new Date(now - 30_000) })),
      extensions: [await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey)],
    });
    return crl.toString("pem") + "\n";
  }
}

/**
 * Places a certificate and its key where the simulator's PKI looks for its own (see
 * src/simulator/pki.ts), so that the simulator presents it. With an issuer, the file holds the
 * chain-less leaf: the CA must come from the client's trust store.
 */
export async function placeSimulatorCertificate(pkiDir: string, cert: TestCert): Promise<void> {
  await mkdir(path.join(pkiDir, "own/certs"), { recursive: true });
  await mkdir(path.join(pkiDir, "own/private"), { recursive: true });
  await writeFile(path.join(pkiDir, "own/certs/certificate.pem"), cert.certPem);
  await writeFile(path.join(pkiDir, "own/private/private_key.pem"), cert.keyPem, { mode: 0o600 });
}

function toTestCert(cert: x509.X509Certificate, keyPem: string, serial: string): TestCert {
  const der = Buffer.from(cert.rawData);
  return { der, certPem: cert.toString("pem") + "\n", keyPem, thumbprint: createHash("sha1").update(der).digest("hex"), serial };
}

/** A positive 64-bit serial, hex, high bit clear so that DER needs no sign byte. */
function serialNumber(): string {
  const b = randomBytes(8);
  b[0] = (b[0]! & 0x7f) | 0x10;
  return b.toString("hex");
}
