/**
 * Encryption of what the buffer stores (`buffer.encryption.keyFile`): AES-256-GCM from
 * node:crypto, a fresh random 96-bit nonce per sealed payload, stored as nonce ‖ ciphertext ‖ tag.
 *
 * The associated data binds a payload to its place: the buffer's epoch (so a row copied from
 * another buffer file fails), what it is (a batch, the snapshot of what was delivered, the key
 * check), and for a batch its id, stored format and item count (so a row altered, or moved to
 * another id, fails). 2^32 random nonces under one key keep the chance of a repeat below 2^-32
 * (NIST SP 800-38D); a buffer seals one payload per batch, far fewer in its life.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes, type KeyObject } from "node:crypto";
import { KerfError } from "../errors.ts";

export const CIPHER = "aes-256-gcm";
const NONCE_BYTES = 12;
const TAG_BYTES = 16;
/** What sealing adds to a payload's stored size. */
export const SEAL_OVERHEAD = NONCE_BYTES + TAG_BYTES;

/** The stored `format` of a sealed batch: its codec format with this bit set. */
export const SEALED = 0x80;

/** What a sealed payload is; part of the associated data, so one kind never opens as another. */
export const Kind = { batch: 1, delivered: 2, keyCheck: 3 } as const;
type Kind = (typeof Kind)[keyof typeof Kind];

const KEY_CHECK = Buffer.from("kerf buffer key check", "utf8");

/** A payload that fails authentication: altered, moved to another id, or sealed with another key. */
export class Tampered extends KerfError {
  constructor() {
    super("BUFFER_CORRUPT", "authentication failed: the stored payload was altered, moved to another batch id, or sealed with another key");
  }
}

export class Sealer {
  readonly #key: KeyObject;
  /** The epoch's SHA-256; the rest of the associated data follows per payload. */
  readonly #epoch: Buffer;

  constructor(key: KeyObject, epoch: string) {
    if (key.type !== "secret" || key.symmetricKeySize !== 32) throw new KerfError("INTERNAL", "the buffer key must be a 32-byte secret key");
    this.#key = key;
    this.#epoch = createHash("sha256").update(epoch, "utf8").digest();
  }

  seal(kind: Kind, plain: Uint8Array, id = 0, format = 0, items = 0): Buffer {
    const nonce = randomBytes(NONCE_BYTES);
    const cipher = createCipheriv(CIPHER, this.#key, nonce, { authTagLength: TAG_BYTES });
    cipher.setAAD(this.#aad(kind, id, format, items));
    const body = cipher.update(plain);
    const last = cipher.final();
    return Buffer.concat([nonce, body, last, cipher.getAuthTag()], NONCE_BYTES + body.length + last.length + TAG_BYTES);
  }

  /** The plaintext, or throws Tampered. */
  open(kind: Kind, sealed: Uint8Array, id = 0, format = 0, items = 0): Buffer {
    if (sealed.byteLength < SEAL_OVERHEAD) throw new Tampered();
    const bytes = Buffer.from(sealed.buffer, sealed.byteOffset, sealed.byteLength);
    const decipher = createDecipheriv(CIPHER, this.#key, bytes.subarray(0, NONCE_BYTES), { authTagLength: TAG_BYTES });
    decipher.setAAD(this.#aad(kind, id, format, items));
    decipher.setAuthTag(bytes.subarray(bytes.length - TAG_BYTES));
    const body = decipher.update(bytes.subarray(NONCE_BYTES, bytes.length - TAG_BYTES));
    try {
      const last = decipher.final();
      return last.length === 0 ? body : Buffer.concat([body, last]);
    } catch {
      throw new Tampered();
    }
  }

  /** A value kept with the buffer that only this key opens: a wrong key is found at open, not by dropping every batch. */
  keyCheck(): string {
    return this.seal(Kind.keyCheck, KEY_CHECK).toString("base64");
  }

  checksKey(value: string): boolean {
    try {
      return this.open(Kind.keyCheck, Buffer.from(value, "base64")).equals(KEY_CHECK);
    } catch {
      return false;
    }
  }

  #aad(kind: Kind, id: number, format: number, items: number): Buffer {
    const aad = Buffer.allocUnsafe(1 + 32 + 8 + 2 + 8);
    aad[0] = kind;
    this.#epoch.copy(aad, 1);
    aad.writeBigUInt64BE(BigInt(id), 33);
    aad.writeUInt16BE(format, 41);
    aad.writeBigUInt64BE(BigInt(items), 43);
    return aad;
  }
}
