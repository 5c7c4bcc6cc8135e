/**
 * SPKI pins as defined by RFC 7469 §2.4: "sha256/" + base64(SHA-256(DER SubjectPublicKeyInfo)).
 * A pin names a key, not a certificate, so a renewed certificate with the same key keeps its pin.
 */
import { X509Certificate, createHash, createPublicKey, type KeyObject } from "node:crypto";
import { KerfError } from "../errors.ts";

/** Something that holds one certificate: PEM text, DER bytes, a Node X509Certificate or a TLS peer certificate. */
export type CertificateInput = string | Uint8Array | X509Certificate | { raw: Uint8Array };

export function spkiPin(cert: CertificateInput): string {
  return publicKeyPin(toX509(cert).publicKey);
}

/**
 * The pin of a public (or private) key. The SPKI must come from KeyObject.export: for EC keys
 * a TLS peer certificate's `pubkey` is the bare curve point, which hashes to a different value.
 */
export function publicKeyPin(key: KeyObject | string): string {
  const obj = typeof key === "string" ? createPublicKey(key) : key.type === "private" ? createPublicKey(key) : key;
  const spki = obj.export({ type: "spki", format: "der" });
  return `sha256/${createHash("sha256").update(spki).digest("base64")}`;
}

const pinPattern = /^sha256\/[A-Za-z0-9+/]{43}=$/;

/** Checks the form of configured pins, so a typo fails at startup rather than as a pin mismatch later. */
export function validatePins(pins: readonly string[]): string[] {
  const bad = pins.filter((p) => !pinPattern.test(p));
  if (bad.length > 0) {
    throw new KerfError("CONFIG_INVALID", `invalid SPKI pin ${bad.map((p) => `'${p}'`).join(", ")}: expected 'sha256/' followed by 44 base64 characters (RFC 7469)`);
  }
  return [...pins];
}

function toX509(cert: CertificateInput): X509Certificate {
  if (cert instanceof X509Certificate) return cert;
  if (typeof cert === "string" || cert instanceof Uint8Array) return new X509Certificate(cert);
  return new X509Certificate(cert.raw);
}
