/**
 * Signing keys of a TUF repository (ed25519, Node crypto), one PEM file per key:
 * `<keys>/<role>/<keyid>.key`, mode 0600. The key id is the TUF one: SHA-256 of the canonical
 * JSON of the public key (TUF spec §4.2), so a client can match it and a key has one id only.
 */
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, sign, type KeyObject } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync } from "node:fs";
import path from "node:path";
import { canonicalize } from "@tufjs/canonical-json";
import { Key, Signature, type Metadata, type Root, type Snapshot, type Targets, type Timestamp } from "@tufjs/models";
import { writeFileAtomic } from "../certs/files.ts";
import { KerfError } from "../errors.ts";

export const ROLES = ["root", "targets", "snapshot", "timestamp"] as const;
export type Role = (typeof ROLES)[number];

export interface SigningKey {
  key: Key;
  privateKey: KeyObject;
  file: string;
}

/** The TUF public key of an ed25519 private or public key: keyval.public is the raw 32 bytes, hex. */
export function tufKey(keyObject: KeyObject): Key {
  const spki = createPublicKey(keyObject).export({ type: "spki", format: "der" });
  // An ed25519 SPKI is a fixed 12-byte header followed by the 32-byte key.
  const keyVal = { public: spki.subarray(spki.length - 32).toString("hex") };
  const json = { keytype: "ed25519", scheme: "ed25519", keyval: keyVal };
  const keyID = createHash("sha256").update(canonicalize(json)).digest("hex");
  return new Key({ keyID, keyType: "ed25519", scheme: "ed25519", keyVal: keyVal });
}

/** A new key for `role`, written to `<keysDir>/<role>/<keyid>.key`. */
export function generateKey(keysDir: string, role: Role): SigningKey {
  const { privateKey } = generateKeyPairSync("ed25519");
  const key = tufKey(privateKey);
  const dir = path.join(keysDir, role);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const file = path.join(dir, `${key.keyID}.key`);
  writeFileAtomic(file, privateKey.export({ type: "pkcs8", format: "pem" }) as string, 0o600);
  return { key, privateKey, file };
}

/** The keys in `<keysDir>/<role>/` (retired keys live in `<keysDir>/retired/`, never here). */
export function loadKeys(keysDir: string, role: Role): SigningKey[] {
  const dir = path.join(keysDir, role);
  if (!existsSync(dir)) return [];
  return readdirSync(dir)
    .filter((f) => f.endsWith(".key"))
    .sort()
    .map((f) => {
      const file = path.join(dir, f);
      let privateKey: KeyObject;
      try {
        privateKey = createPrivateKey(readFileSync(file, "utf8"));
      } catch (err) {
        throw new KerfError("CERT_MALFORMED", `${file}: not a PEM private key: ${(err as Error).message}`, { cause: err });
      }
      if (privateKey.asymmetricKeyType !== "ed25519") throw new KerfError("CERT_UNSUITABLE", `${file}: a ${privateKey.asymmetricKeyType} key; release keys are ed25519`);
      return { key: tufKey(privateKey), privateKey, file };
    });
}

/** Moves a key out of its role directory, kept for the record (and for signing the rotation). */
export function retireKey(keysDir: string, k: SigningKey): void {
  const dir = path.join(keysDir, "retired");
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  renameSync(k.file, path.join(dir, path.basename(k.file)));
}

type AnyMetadata = Metadata<Root> | Metadata<Targets> | Metadata<Snapshot> | Metadata<Timestamp>;

/** Adds one signature per key; @tufjs/models hands the signer the canonical bytes of `signed`. */
export function signWith(metadata: AnyMetadata, keys: readonly SigningKey[]): void {
  for (const k of keys) {
    metadata.sign((data) => new Signature({ keyID: k.key.keyID, sig: sign(null, data, k.privateKey).toString("hex") }));
  }
}
