/**
 * The one place that sets up @peculiar/x509: it needs reflect-metadata loaded first and
 * Node's WebCrypto as its provider. Every module in src/certs imports x509 from here.
 */
import "reflect-metadata";
import { createPrivateKey, createPublicKey, webcrypto } from "node:crypto";
import * as x509 from "@peculiar/x509";
import { KerfError } from "../errors.ts";

// lib "es2024" has no DOM types, so name WebCrypto's types through node:crypto.
export type CryptoKey = webcrypto.CryptoKey;
export type CryptoKeyPair = webcrypto.CryptoKeyPair;

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

export { x509 };
export const subtle = webcrypto.subtle;

export type KeyType = "ec" | "rsa";

export const ecKeyAlgorithm = { name: "ECDSA", namedCurve: "P-256" } as const;
export const rsaKeyAlgorithm = {
  name: "RSASSA-PKCS1-v1_5",
  modulusLength: 2048,
  publicExponent: new Uint8Array([1, 0, 1]),
  hash: "SHA-256",
} as const;

/** A fresh key pair, extractable so that it can be written to disk as PKCS#8. */
export async function generateKeyPair(type: KeyType): Promise<CryptoKeyPair> {
  const algorithm = type === "ec" ? ecKeyAlgorithm : rsaKeyAlgorithm;
  return (await subtle.generateKey(algorithm, true, ["sign", "verify"])) as CryptoKeyPair;
}

export async function privateKeyToPem(key: CryptoKey): Promise<string> {
  const der = await subtle.exportKey("pkcs8", key);
  return x509.PemConverter.encode(der, "PRIVATE KEY");
}

/**
 * Loads a PKCS#8 PEM private key (EC P-256 or RSA) as a WebCrypto key pair. Node's
 * KeyObject tells us the type and derives the public half, so one PEM file is enough.
 */
export async function keyPairFromPem(keyPem: string): Promise<CryptoKeyPair> {
  const priv = createPrivateKey(keyPem);
  const pkcs8 = priv.export({ type: "pkcs8", format: "der" });
  const spki = createPublicKey(priv).export({ type: "spki", format: "der" });
  const algorithm = priv.asymmetricKeyType === "ec" ? ecKeyAlgorithm : priv.asymmetricKeyType === "rsa" ? { name: rsaKeyAlgorithm.name, hash: "SHA-256" } : null;
  if (algorithm === null) throw new KerfError("CERT_UNSUITABLE", `unsupported private key type '${priv.asymmetricKeyType}' (expected EC P-256 or RSA)`);
  const privateKey = await subtle.importKey("pkcs8", pkcs8, algorithm, true, ["sign"]);
  const publicKey = await subtle.importKey("spki", spki, algorithm, true, ["verify"]);
  return { privateKey, publicKey };
}

/** The signature algorithm that goes with a signing key. */
export function signingAlgorithmFor(key: CryptoKey): webcrypto.Algorithm | webcrypto.EcdsaParams {
  return key.algorithm.name === "ECDSA" ? { name: "ECDSA", hash: "SHA-256" } : { name: "RSASSA-PKCS1-v1_5" };
}
