/**
 * Whether a buffer file is encrypted, decided once at open (see "Encryption" in buffer.ts):
 * - encrypted file, no key: refused (nothing is read, nothing dropped);
 * - encrypted file, another key: refused, found by the key check value in `meta`, not by
 *   dropping hours of data as tampered;
 * - plain file, a key: every stored payload is sealed in place, in one transaction, with
 *   `secure_delete` so that the plain pages are overwritten; then the WAL is truncated;
 * - plain file, no key: plain, as before.
 * A file is encrypted or not as a whole: in an encrypted one, a payload that is not sealed is tampered.
 */
import type { KeyObject } from "node:crypto";
import type { DatabaseSync } from "node:sqlite";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { ioError } from "./schema.ts";
import { CIPHER, Kind, SEALED, Sealer } from "./seal.ts";

export interface EncryptionOptions {
  /** 32 bytes for AES-256-GCM (config/load.ts reads it from `buffer.encryption.keyFile`). */
  key: KeyObject;
  /** Where the key came from, for messages. */
  keyFile?: string;
}

export function setUpEncryption(db: DatabaseSync, path: string, epoch: string, encryption: EncryptionOptions | undefined, log: Logger): Sealer | null {
  const meta = (name: string) => (db.prepare("SELECT value FROM meta WHERE name = ?").get(name) as { value: string } | undefined)?.value;
  const cipher = meta("cipher");
  const stored = () => Number((db.prepare("SELECT count(*) AS n FROM batches WHERE acked = 0").get() as { n: number }).n);
  const aside = `move ${path} and ${path}-wal aside to start with an empty buffer (the batches it holds are then not sent)`;
  if (cipher !== undefined && cipher !== CIPHER) {
    throw new KerfError("BUFFER_KEY", `buffer ${path} is encrypted with ${cipher}; this Kerf reads ${CIPHER} only`);
  }
  if (cipher !== undefined && !encryption) {
    throw new KerfError("BUFFER_KEY", `buffer ${path} is encrypted and no key is configured: set buffer.encryption.keyFile to the key it was written with (nothing was read or dropped)`, {
      details: [`it holds ${stored()} batches not yet sent`, aside],
    });
  }
  if (!encryption) return null;
  const sealer = new Sealer(encryption.key, epoch);
  const keyFile = encryption.keyFile ?? "the configured key file";
  if (cipher !== undefined) {
    if (sealer.checksKey(meta("key_check") ?? "")) return sealer;
    throw new KerfError("BUFFER_KEY", `buffer ${path} was encrypted with another key: ${keyFile} does not open it (its key check fails); mount the key it was written with (nothing was read or dropped)`, {
      details: [`it holds ${stored()} batches not yet sent`, aside],
    });
  }
  const sealed = sealInPlace(db, path, sealer);
  if (sealed > 0) log.info({ event: "buffer_encrypted", batches: sealed }, `buffer ${path}: encryption is now on; sealed the ${sealed} batches it held in place`);
  return sealer;
}

/** Seals every payload of a plain file and marks it encrypted, in one transaction. Returns the batches sealed. */
function sealInPlace(db: DatabaseSync, path: string, sealer: Sealer): number {
  let n = 0;
  try {
    // Deleted or overwritten content is zeroed instead of left in free pages.
    db.exec("PRAGMA secure_delete = ON");
    db.exec("BEGIN IMMEDIATE");
    const rewrite = db.prepare("UPDATE batches SET format = ?, bytes = ?, payload = ? WHERE id = ?");
    const rows = db.prepare("SELECT id, items, format, payload FROM batches").all() as { id: number; items: number; format: number; payload: Uint8Array }[];
    for (const row of rows) {
      const format = row.format | SEALED;
      const payload = sealer.seal(Kind.batch, row.payload, row.id, format, row.items);
      rewrite.run(format, payload.byteLength, payload, row.id);
      n++;
    }
    const delivered = db.prepare("SELECT format, payload FROM delivered WHERE id = 1").get() as { format: number; payload: Uint8Array } | undefined;
    if (delivered) db.prepare("UPDATE delivered SET payload = ? WHERE id = 1").run(sealer.seal(Kind.delivered, delivered.payload, 0, delivered.format));
    const set = db.prepare("INSERT INTO meta (name, value) VALUES (?, ?)");
    set.run("cipher", CIPHER);
    set.run("key_check", sealer.keyCheck());
    db.exec("COMMIT");
    // The plain pages left the database file at the checkpoint; the WAL that held them is emptied.
    db.exec("PRAGMA wal_checkpoint(TRUNCATE)");
    db.exec("PRAGMA secure_delete = OFF");
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    throw ioError(path, "encrypting the stored batches", err);
  }
  return n;
}
