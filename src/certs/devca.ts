/**
 * A development certificate authority for the demo, the devcloud and the tests. It is a real
 * X.509 CA (EC P-256, basicConstraints CA, keyCertSign), so TLS code paths are the ones a
 * production PKI exercises; only its key storage (a 0600 file) is made for development.
 */
import { X509Certificate as NodeX509, createPrivateKey } from "node:crypto";
import { existsSync, mkdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { KerfError } from "../errors.ts";
import { writeFileAtomic } from "./files.ts";
import { generateKeyPair, keyPairFromPem, privateKeyToPem, signingAlgorithmFor, x509, type CryptoKeyPair, type KeyType } from "./x509.ts";

export interface ServerCertOptions {
  dnsNames?: string[];
  ips?: string[];
  /** Key type of a new key; ignored when keyPem is given. Default "ec". */
  keyType?: KeyType;
  /** Reuse this key (PKCS#8 PEM) instead of generating one: a renewal that keeps the pin. */
  keyPem?: string;
  notBefore?: Date;
  notAfter?: Date;
  /** Sign with this authority (e.g. an intermediate) instead of the one called. */
  issuer?: CertAuthority;
}

export interface ClientCertOptions {
  /** Connector instance name: becomes CN and the SAN URI urn:kerf:<instance>. */
  instance: string;
  /** The instance's public key; give this or csrPem. */
  publicKeyPem?: string;
  /** A PKCS#10 request; its signature is checked, its subject is ignored (the CA decides the name). */
  csrPem?: string;
  notBefore?: Date;
  notAfter?: Date;
}

export interface IssuedCert {
  certPem: string;
  keyPem: string;
  /** The leaf followed by the intermediates up to (not including) the root: what a TLS server presents. */
  chainPem: string;
}

const instancePattern = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const day = 24 * 3600 * 1000;

export function checkInstanceName(instance: string): void {
  if (!instancePattern.test(instance)) {
    throw new KerfError("CERT_REQUEST_INVALID", `instance name '${instance}' is not valid: expected 1-64 characters of A-Z a-z 0-9 . _ - starting with a letter or digit`);
  }
}

/** A CA (root or intermediate) held in memory. */
export class CertAuthority {
  readonly certPem: string;
  readonly keyPem: string;
  /** This CA's certificate and its parents' up to, not including, the root ("" for a root). */
  readonly chainPem: string;
  readonly name: string;
  /**
   * The latest client certificate (leaf PEM) issued to each instance, by this CA object: the
   * devcloud's authorization server takes an instance's key for private_key_jwt from it.
   */
  readonly issuedClientCerts = new Map<string, string>();
  private readonly keys: CryptoKeyPair;
  private readonly cert: x509.X509Certificate;

  protected constructor(cert: x509.X509Certificate, keys: CryptoKeyPair, certPem: string, keyPem: string, chainPem: string) {
    this.cert = cert;
    this.keys = keys;
    this.certPem = certPem;
    this.keyPem = keyPem;
    this.chainPem = chainPem;
    this.name = cert.subject;
  }

  /** A new self-signed root CA. */
  static async createRoot(name: string, options: { notBefore?: Date; notAfter?: Date } = {}): Promise<CertAuthority> {
    const { cert, keys, certPem, keyPem } = await newCaCert(name, null, options);
    return new CertAuthority(cert, keys, certPem, keyPem, "");
  }

  static async load(certPem: string, keyPem: string, chainPem = ""): Promise<CertAuthority> {
    const keys = await keyPairFromPem(keyPem);
    const cert = new x509.X509Certificate(certPem);
    return new CertAuthority(cert, keys, certPem, keyPem, chainPem);
  }

  /** An intermediate CA signed by this one, for CA → intermediate → leaf chains. */
  async createIntermediate(options: { name?: string; notBefore?: Date; notAfter?: Date } = {}): Promise<CertAuthority> {
    const { cert, keys, certPem, keyPem } = await newCaCert(options.name ?? "CN=Kerf Dev Intermediate CA", this, options);
    return new CertAuthority(cert, keys, certPem, keyPem, certPem + this.chainPem);
  }

  /** A TLS server certificate (EKU serverAuth) for the given DNS names and IP addresses. */
  async issueServerCert(options: ServerCertOptions): Promise<IssuedCert> {
    const issuer = options.issuer ?? this;
    const keys = options.keyPem ? await keyPairFromPem(options.keyPem) : await generateKeyPair(options.keyType ?? "ec");
    const names = [...(options.dnsNames ?? []).map((value) => ({ type: "dns" as const, value })), ...(options.ips ?? []).map((value) => ({ type: "ip" as const, value }))];
    if (names.length === 0) throw new KerfError("CERT_REQUEST_INVALID", "a server certificate needs at least one DNS name or IP address");
    const rsa = keys.publicKey.algorithm.name !== "ECDSA";
    const cert = await issuer.sign({
      subject: `CN=${options.dnsNames?.[0] ?? options.ips?.[0]}`,
      publicKey: keys.publicKey,
      notBefore: options.notBefore,
      notAfter: options.notAfter,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        // RSA key exchange needs keyEncipherment; ECDHE with either key type needs digitalSignature.
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | (rsa ? x509.KeyUsageFlags.keyEncipherment : 0), true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
        new x509.SubjectAlternativeNameExtension(names),
      ],
    });
    const certPem = cert.toString("pem") + "\n";
    return { certPem, keyPem: options.keyPem ?? (await privateKeyToPem(keys.privateKey)), chainPem: certPem + issuer.chainPem };
  }

  /** A client certificate (EKU clientAuth) for a connector instance. Returns the leaf followed by any intermediates. */
  async issueClientCert(options: ClientCertOptions): Promise<string> {
    checkInstanceName(options.instance);
    let publicKey: x509.PublicKey;
    if (options.csrPem) {
      let csr: x509.Pkcs10CertificateRequest;
      try {
        csr = new x509.Pkcs10CertificateRequest(options.csrPem);
      } catch (err) {
        throw new KerfError("CERT_REQUEST_INVALID", `the certificate request is not a valid PKCS#10 PEM: ${(err as Error).message}`);
      }
      // Proof of possession: only the holder of the private key can have signed the request.
      const verified = await csr.verify().catch(() => false);
      if (!verified) throw new KerfError("CERT_REQUEST_INVALID", "the certificate request's signature does not verify (no proof of possession of the key)");
      publicKey = csr.publicKey;
    } else if (options.publicKeyPem) {
      publicKey = new x509.PublicKey(options.publicKeyPem);
    } else {
      throw new KerfError("CERT_REQUEST_INVALID", "issueClientCert needs publicKeyPem or csrPem");
    }
    const cert = await this.sign({
      subject: `CN=${options.instance}`,
      publicKey,
      notBefore: options.notBefore,
      notAfter: options.notAfter,
      extensions: [
        new x509.BasicConstraintsExtension(false, undefined, true),
        new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
        new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.clientAuth]),
        new x509.SubjectAlternativeNameExtension([{ type: "url", value: `urn:kerf:${options.instance}` }]),
      ],
    });
    const leafPem = cert.toString("pem") + "\n";
    this.issuedClientCerts.set(options.instance, leafPem);
    return leafPem + this.chainPem;
  }

  /** Signs a certificate with this CA's key, adding the key identifiers that chain building uses. */
  protected async sign(params: { subject: string; publicKey: x509.PublicKeyType; notBefore?: Date; notAfter?: Date; extensions: x509.Extension[] }): Promise<x509.X509Certificate> {
    const now = Date.now();
    return x509.X509CertificateGenerator.create({
      subject: params.subject,
      issuer: this.cert.subject,
      publicKey: params.publicKey,
      signingKey: this.keys.privateKey,
      signingAlgorithm: signingAlgorithmFor(this.keys.privateKey),
      // A few minutes back, so a device whose clock runs slightly behind still accepts it.
      notBefore: params.notBefore ?? new Date(now - 5 * 60 * 1000),
      notAfter: params.notAfter ?? new Date(now + 365 * day),
      extensions: [
        ...params.extensions,
        await x509.SubjectKeyIdentifierExtension.create(params.publicKey),
        await x509.AuthorityKeyIdentifierExtension.create(this.keys.publicKey),
      ],
    });
  }
}

async function newCaCert(name: string, parent: CertAuthority | null, options: { notBefore?: Date; notAfter?: Date }) {
  const keys = await generateKeyPair("ec");
  const now = Date.now();
  const notBefore = options.notBefore ?? new Date(now - 5 * 60 * 1000);
  const notAfter = options.notAfter ?? new Date(now + 10 * 365 * day);
  const extensions = [
    new x509.BasicConstraintsExtension(true, parent ? 0 : undefined, true),
    new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
    await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
  ];
  let cert: x509.X509Certificate;
  if (parent) {
    const parentKeys = await keyPairFromPem(parent.keyPem);
    cert = await x509.X509CertificateGenerator.create({
      subject: name,
      issuer: parent.name,
      publicKey: keys.publicKey,
      signingKey: parentKeys.privateKey,
      signingAlgorithm: signingAlgorithmFor(parentKeys.privateKey),
      notBefore,
      notAfter,
      extensions: [...extensions, await x509.AuthorityKeyIdentifierExtension.create(parentKeys.publicKey)],
    });
  } else {
    cert = await x509.X509CertificateGenerator.createSelfSigned({ name, keys, signingAlgorithm: signingAlgorithmFor(keys.privateKey), notBefore, notAfter, extensions });
  }
  return { cert, keys, certPem: cert.toString("pem") + "\n", keyPem: await privateKeyToPem(keys.privateKey) };
}

/** The development CA persisted in a directory: ca.pem and ca.key (mode 0600). */
export interface DevCa extends CertAuthority {
  readonly dir: string;
  readonly certFile: string;
  readonly keyFile: string;
}

/**
 * Loads the dev CA from `dir`, or creates it there on first use. Keeping it on disk means a
 * devcloud restarted on the same directory trusts the client certificates it issued before.
 */
export async function createDevCa(dir: string, name = "CN=Kerf Dev CA"): Promise<DevCa> {
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, "ca.pem");
  const keyFile = join(dir, "ca.key");
  const haveCert = existsSync(certFile);
  const haveKey = existsSync(keyFile);
  let ca: CertAuthority;
  if (haveCert && haveKey) {
    const certPem = readFileSync(certFile, "utf8");
    const keyPem = readFileSync(keyFile, "utf8");
    let matches: boolean;
    try {
      matches = new NodeX509(certPem).checkPrivateKey(createPrivateKey(keyPem));
    } catch (err) {
      throw new KerfError("CERT_FILE", `the dev CA in ${dir} cannot be read: ${(err as Error).message}`);
    }
    if (!matches) throw new KerfError("CERT_KEY_MISMATCH", `the dev CA in ${dir} is inconsistent: ca.key is not the key of ca.pem`);
    ca = await CertAuthority.load(certPem, keyPem);
  } else if (haveCert || haveKey) {
    throw new KerfError("CERT_FILE", `the dev CA in ${dir} is incomplete: found ${haveCert ? "ca.pem" : "ca.key"} without ${haveCert ? "ca.key" : "ca.pem"}; restore it or remove it to create a new CA`);
  } else {
    ca = await CertAuthority.createRoot(name);
    writeFileAtomic(keyFile, ca.keyPem, 0o600);
    writeFileAtomic(certFile, ca.certPem, 0o644);
  }
  return Object.assign(ca, { dir, certFile, keyFile });
}
