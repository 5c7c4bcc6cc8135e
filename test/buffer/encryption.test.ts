/**
 * Buffer encryption against the real SQLite file and real AES-256-GCM: what an attacker with
 * write access to the state volume can do to the rows is detected, a wrong key is refused at
 * open, and nothing readable is left on disk.
 */
import { createSecretKey, randomBytes, type KeyObject } from "node:crypto";
import { readFileSync } from "node:fs";
import { DatabaseSync } from "node:sqlite";
import { describe, expect, it } from "vitest";
import { DurableBuffer, type BufferOptions } from "../../src/buffer/buffer.ts";
import { batch, bufferPerTest, captureLogger, dataMessage } from "./helpers.ts";

const LIMITS = { maxItems: 1000, maxBytes: 1_000_000 };
const newKey = (): KeyObject => createSecretKey(randomBytes(32));
const values = (b: { messages: unknown[] }) => (b.messages as ReturnType<typeof dataMessage>[]).flatMap((m) => m.items.map((i) => i.v));

const buf = bufferPerTest("buffer.db", { compress: false });

/** Runs `sql` on the closed buffer file, as someone with access to the state volume could. */
function tamper(sql: string): void {
  const db = new DatabaseSync(buf.path());
  try {
    db.exec(sql);
  } finally {
    db.close();
  }
}

/** Flips the lowest bit of byte `offset` of batch `id`'s stored payload. */
function flipBit(id: number, offset: number): void {
  const db = new DatabaseSync(buf.path());
  try {
    const { payload } = db.prepare("SELECT payload FROM batches WHERE id = ?").get(id) as { payload: Uint8Array };
    payload[offset]! ^= 1;
    db.prepare("UPDATE batches SET payload = ? WHERE id = ?").run(payload, id);
  } finally {
    db.close();
  }
}

function openWith(key: KeyObject, options: Partial<BufferOptions> = {}): DurableBuffer {
  return buf.open({ encryption: { key, keyFile: "/run/secrets/kerf-buffer-key" }, ...options });
}

/** The raw database and WAL bytes, as a thief of the volume reads them. */
function fileBytes(): string {
  let all = readFileSync(buf.path()).toString("latin1");
  try {
    all += readFileSync(`${buf.path()}-wal`).toString("latin1");
  } catch {
    // no WAL after a checkpoint
  }
  return all;
}

/** Every stored batch of the closed file is sealed, and no value is readable in it. */
function expectAllSealed(): void {
  const db = new DatabaseSync(buf.path(), { readOnly: true });
  const formats = (db.prepare("SELECT format FROM batches").all() as { format: number }[]).map((r) => r.format & 0x80);
  db.close();
  expect(formats.length).toBeGreaterThan(0);
  expect(formats.every((f) => f === 0x80)).toBe(true);
  expect(fileBytes().includes("load.c")).toBe(false);
}

describe("an encrypted buffer", () => {
  it("returns what was appended, across a restart with the same key, and stores none of it in clear", () => {
    const key = newKey();
    let b = openWith(key);
    const ids = [1, 2, 3].map((seq) => b.append(batch(5, seq)));
    b.ack(ids[0]!);
    b.close();
    // Content and keys of the values are nowhere in the file.
    const raw = fileBytes();
    expect(raw.includes("load.c")).toBe(false);
    expect(raw.includes("press-01")).toBe(false);

    b = openWith(key);
    expect(b.encrypted).toBe(true);
    const got = b.next(10);
    expect(got.map((x) => x.id)).toEqual(ids.slice(1));
    expect(got.map(values)).toEqual([2, 3].map((seq) => Array.from({ length: 5 }, (_, i) => seq * 100_000 + i)));
    // The snapshot of what was delivered is sealed too, and read back.
    expect(b.lastDelivered("press-01", new Set(["load.c03004"])).get("load.c03004")?.v).toBe(300_004);
    // Space accounting counts what is stored: the sealed payloads, 28 bytes more than the JSON.
    expect(b.stats().bytes).toBe(got.reduce((n, x) => n + x.json.length + 28, 0));
    expect(got.map((x) => x.bytes)).toEqual(got.map((x) => x.json.length + 28));
  });

  it("drops a row whose ciphertext was altered as tampered, logs its id once without its content, and sends the rest", () => {
    const key = newKey();
    let b = openWith(key);
    const ids = [1, 2, 3].map((seq) => b.append(batch(5, seq)));
    b.close();
    // Flip one bit in the middle of batch 2's stored ciphertext.
    flipBit(ids[1]!, 40);
    const { logger, lines } = captureLogger();
    b = openWith(key, { logger });
    const got = b.next(10);
    expect(got.map((x) => x.id)).toEqual([ids[0], ids[2]]);
    expect(got.map(values)).toEqual([1, 3].map((seq) => Array.from({ length: 5 }, (_, i) => seq * 100_000 + i)));
    const s = b.stats();
    expect(s.dropped).toEqual({ buffer_full: 0, rejected: 0, too_large: 0, tampered: 5 });
    expect(s.appendedItems).toBe(s.ackedItems + s.droppedItems + s.items);
    const tamperedLines = lines.filter((l) => l.event === "buffer_tampered");
    expect(tamperedLines).toEqual([expect.objectContaining({ id: ids[1], items: 5, reason: "tampered" })]);
    // Neither the line nor anything else logged carries a value.
    expect(JSON.stringify(lines)).not.toMatch(/load\.c|200000|200001/);
    // Once dropped it is gone: the next read neither sees nor logs it again.
    expect(b.next(10).map((x) => x.id)).toEqual([ids[0], ids[2]]);
    expect(lines.filter((l) => l.event === "buffer_tampered")).toHaveLength(1);
  });

  it("drops rows whose payloads were swapped, or whose item count was changed, as tampered", () => {
    const key = newKey();
    let b = openWith(key);
    const ids = [1, 2, 3, 4].map((seq) => b.append(batch(5, seq)));
    b.close();
    tamper(`
      CREATE TEMP TABLE p AS SELECT id, payload FROM batches;
      UPDATE batches SET payload = (SELECT payload FROM p WHERE id = ${ids[1]}) WHERE id = ${ids[0]};
      UPDATE batches SET payload = (SELECT payload FROM p WHERE id = ${ids[0]}) WHERE id = ${ids[1]};
      UPDATE batches SET items = 4 WHERE id = ${ids[2]};`);
    b = openWith(key);
    expect(b.nextMerged(10, new Set(), LIMITS).map((x) => [x.id, x.items])).toEqual([[ids[3], 5]]);
    expect(b.stats().dropped.tampered).toBe(5 + 5 + 4);
  });

  it("drops a row written in clear into an encrypted buffer as tampered", () => {
    const key = newKey();
    let b = openWith(key);
    const id = b.append(batch(5, 1));
    b.close();
    const json = JSON.stringify(batch(3, 9));
    tamper(`INSERT INTO batches (created_at, items, bytes, format, payload) VALUES (0, 3, ${json.length}, 0, CAST('${json}' AS BLOB))`);
    b = openWith(key);
    expect(b.next(10).map((x) => x.id)).toEqual([id]);
    expect(b.stats().dropped.tampered).toBe(3);
  });

  it("refuses to open with another key, and without a key, dropping nothing", () => {
    const key = newKey();
    let b = openWith(key);
    const ids = [1, 2].map((seq) => b.append(batch(5, seq)));
    b.close();
    expect(() => openWith(newKey())).toThrow(
      expect.objectContaining({ code: "BUFFER_KEY", message: expect.stringMatching(/was encrypted with another key: \/run\/secrets\/kerf-buffer-key does not open it.*nothing was read or dropped/) }),
    );
    expect(() => buf.open()).toThrow(expect.objectContaining({ code: "BUFFER_KEY", message: expect.stringMatching(/is encrypted and no key is configured: set buffer\.encryption\.keyFile/) }));
    b = openWith(key);
    expect(b.next(10).map((x) => x.id)).toEqual(ids);
    expect(b.stats().droppedItems).toBe(0);
  });

  it("seals a plain buffer in place when a key is first given, leaving no plain payload in the file", () => {
    let b = buf.open();
    const ids = [1, 2, 3].map((seq) => b.append(batch(5, seq)));
    b.ack(ids[0]!);
    b.close();
    expect(fileBytes().includes("load.c")).toBe(true);

    const key = newKey();
    const { logger, lines } = captureLogger();
    b = openWith(key, { logger });
    expect(lines).toContainEqual(expect.objectContaining({ event: "buffer_encrypted", batches: 2 }));
    expect(b.next(10).map(values)).toEqual([2, 3].map((seq) => Array.from({ length: 5 }, (_, i) => seq * 100_000 + i)));
    b.close();
    expect(fileBytes().includes("load.c")).toBe(false);
    b = openWith(key);
    expect(b.next(10).map((x) => x.id)).toEqual(ids.slice(1));
    expect(b.stats().droppedItems).toBe(0);
  });

  it("merges a backlog into a batch sealed under its new row, readable after a restart", () => {
    const key = newKey();
    let b = openWith(key);
    const ids = [1, 2, 3].map((seq) => b.append(batch(5, seq)));
    const [merged] = b.nextMerged(10, new Set(), LIMITS);
    expect([merged!.id, merged!.items]).toEqual([ids[2], 15]);
    b.close();
    expectAllSealed();
    b = openWith(key);
    const [again] = b.next(10);
    expect([again!.id, again!.items]).toEqual([ids[2], 15]);
    expect(values(again!)).toEqual([1, 2, 3].flatMap((seq) => Array.from({ length: 5 }, (_, i) => seq * 100_000 + i)));
    expect(b.stats().droppedItems).toBe(0);
  });

  it("a split batch's parts are sealed under their new ids", () => {
    const key = newKey();
    let b = openWith(key);
    const id = b.append(batch(6, 1));
    const parts = b.replace(id, [batch(3, 1), batch(3, 2)]);
    b.close();
    expectAllSealed();
    b = openWith(key);
    expect(b.next(10).map((x) => [x.id, x.items])).toEqual(parts.map((p) => [p, 3]));
    expect(b.stats().droppedItems).toBe(0);
  });
});

describe("schema version 3", () => {
  it("a version 2 buffer gains the tampered counter and keeps its batches", () => {
    let b = buf.open();
    const id = b.append(batch(5, 1));
    b.close();
    tamper("DELETE FROM counters WHERE name = 'dropped_tampered'; PRAGMA user_version = 2;");
    b = buf.open();
    expect(b.next(10).map((x) => x.id)).toEqual([id]);
    expect(b.stats()).toMatchObject({ appendedItems: 5, dropped: { tampered: 0 } });
    b.close();
    const db = new DatabaseSync(buf.path(), { readOnly: true });
    expect(db.prepare("PRAGMA user_version").get()).toEqual({ user_version: 3 });
    db.close();
  });
});
