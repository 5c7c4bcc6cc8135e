import { createSecretKey, type KeyObject } from "node:crypto";
import { found } from "./describe.ts";

export const FORMS = "32 random bytes, 64 hex characters or 44 base64 characters";
const MAKE = "make one with: head -c 32 /dev/urandom > FILE";

/**
 * The buffer's key from its file's bytes and mode (`buffer.encryption.keyFile`); the bytes
 * are wiped. Three forms, told apart by length:
 * exactly 32 bytes are the key itself; otherwise, with surrounding whitespace removed, 64 hex
 * characters or the 44 base64 characters of 32 bytes. 32 bytes that are all printable text are
 * refused: a password typed into the file, not a random key.
 *
 * Secure by default: a key file that other users may read or write is refused (a key anyone on
 * the machine can read protects nothing); one the file's group may read is only warned about,
 * since Kubernetes makes a secret group-readable when the pod sets fsGroup.
 */
export function bufferKey(bytes: Buffer, mode: number, display: string): { key: KeyObject; warning?: string } | { problem: string } {
  const octal = mode.toString(8).padStart(4, "0");
  if ((mode & 0o007) !== 0) {
    bytes.fill(0);
    return {
      problem: `the key file can be read or written by every user of this machine (found ${found(display)} with mode ${octal}; expected 0600 or 0400: chmod 600 it, or in Kubernetes give the secret volume defaultMode: 0400)`,
    };
  }
  const raw = parseKey(bytes);
  bytes.fill(0);
  if (typeof raw === "string") return { problem: `${raw} (found ${found(display)}; expected ${FORMS}; ${MAKE})` };
  const key = createSecretKey(raw);
  raw.fill(0);
  const warning = (mode & 0o070) !== 0 ? `the key file can be read by its group (found mode ${octal}; expected 0600 or 0400)` : undefined;
  return warning ? { key, warning } : { key };
}

/** The 32 key bytes, or what is wrong with the file's content. */
function parseKey(bytes: Buffer): Buffer | string {
  if (bytes.length === 32) {
    if (bytes.every((b) => b >= 0x20 && b <= 0x7e)) return "the key file holds 32 characters of text, not 32 random bytes";
    return Buffer.from(bytes);
  }
  const text = bytes.toString("latin1").trim();
  if (/^[0-9a-fA-F]{64}$/.test(text)) return Buffer.from(text, "hex");
  if (/^[A-Za-z0-9+/]{43}=$/.test(text)) {
    const key = Buffer.from(text, "base64");
    if (key.length === 32 && key.toString("base64") === text) return key;
  }
  return bytes.length === 0 ? "the key file is empty" : `the key file holds ${bytes.length} bytes that are not a key in any of the three forms`;
}
