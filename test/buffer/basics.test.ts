import { describe, expect, it } from "vitest";
import { DatabaseSync } from "node:sqlite";
import { closeSync, openSync, writeFileSync, writeSync } from "node:fs";
import { join } from "node:path";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import { isKerfError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import type { Message } from "../../src/message.ts";
import { batch, bufferPerTest, captureLogger, tempDir, WARN } from "./helpers.ts";

const t = bufferPerTest(join("state", "buffer.db"));
const openBuffer = t.open;

describe("append, next, ack", () => {
  it("stores batches, returns them oldest first and deletes on ack", () => {
    const b = openBuffer();
    const ids = [b.append(batch(3, 1)), b.append(batch(2, 2)), b.append(batch(1, 3))];
    expect(ids).toEqual([1, 2, 3]);
    const got = b.next(10);
    expect(got.map((x) => x.id)).toEqual(ids);
    expect(got[0]!.messages).toEqual(batch(3, 1));
    expect(got.map((x) => x.items)).toEqual([3, 2, 1]);
    expect(got[0]!.bytes).toBeGreaterThan(0);
    expect(b.stats()).toMatchObject({ batches: 3, items: 6, appendedItems: 6, ackedItems: 0, droppedItems: 0 });

    b.ack(ids[1]!);
    expect(b.next(10).map((x) => x.id)).toEqual([1, 3]);
    expect(b.stats()).toMatchObject({ batches: 2, items: 4, appendedItems: 6, ackedItems: 2 });
    b.ack(ids[1]!); // already gone: no-op
    b.ack(999);
    expect(b.stats()).toMatchObject({ batches: 2, ackedItems: 2 });
  });

  it("honours limit and skips excluded (in-flight) ids", () => {
    const b = openBuffer();
    for (let i = 0; i < 6; i++) b.append(batch(1, i));
    expect(b.next(2).map((x) => x.id)).toEqual([1, 2]);
    expect(b.next(2, new Set([1, 2])).map((x) => x.id)).toEqual([3, 4]);
    expect(b.next(3, new Set([2, 4])).map((x) => x.id)).toEqual([1, 3, 5]);
    expect(b.next(10, new Set([1, 2, 3, 4, 5, 6]))).toEqual([]);
    expect(b.next(0)).toEqual([]);
  });

  it("counts items of every message kind and keeps their content", () => {
    const b = openBuffer();
    const messages: Message[] = [
      ...batch(4),
      { kind: "event", machine: "m", key: "alarm", t: "2026-11-23T20:00:00Z", fields: { severity: 500, text: "Ölstand ✓" } },
      { kind: "status", machine: "m", state: "offline", reason: "session lost", t: "2026-11-23T20:00:01Z" },
    ];
    const id = b.append(messages);
    expect(b.next(1)).toEqual([expect.objectContaining({ id, items: 6, messages })]);
  });

  it("reports stored totals and the oldest time", () => {
    const b = openBuffer();
    expect(b.stats()).toEqual({
      batches: 0, items: 0, bytes: 0, appendedItems: 0, ackedItems: 0,
      dropped: { buffer_full: 0, rejected: 0, too_large: 0, tampered: 0 }, droppedItems: 0, oldestCreatedAt: null,
    });
    const before = Date.now();
    b.append(batch(5));
    b.append(batch(5));
    const s = b.stats();
    const stored = b.next(10);
    expect(s.bytes).toBe(stored[0]!.bytes + stored[1]!.bytes);
    expect(s.oldestCreatedAt).toBeGreaterThanOrEqual(before);
    expect(s.oldestCreatedAt).toBeLessThanOrEqual(Date.now());
    expect(s.oldestCreatedAt).toBe(stored[0]!.createdAt);
  });

  it("refuses an empty batch", () => {
    const b = openBuffer();
    expect(() => b.append([])).toThrow(expect.objectContaining({ code: "INTERNAL" }));
    expect(b.stats().batches).toBe(0);
  });

  it("refuses use after close", () => {
    const b = openBuffer();
    b.close();
    expect(() => b.append(batch(1))).toThrow(/closed/);
    expect(() => b.append(batch(1))).toThrow(expect.objectContaining({ name: "KerfError", code: "BUFFER_CLOSED" }));
  });
});

describe("ids and epoch", () => {
  it("never reuses ids: after deleting everything and across reopen", () => {
    let b = openBuffer();
    const first = [b.append(batch(1)), b.append(batch(1))];
    for (const id of first) b.ack(id);
    expect(b.stats().batches).toBe(0);
    const third = b.append(batch(1));
    expect(third).toBe(3);
    b.ack(third);
    const epoch = b.epoch;
    b.close();

    b = openBuffer();
    expect(b.epoch).toBe(epoch);
    expect(b.append(batch(1))).toBe(4);
    expect(b.stats()).toMatchObject({ appendedItems: 4, ackedItems: 3, batches: 1 });
  });

  it("gives a new file a new epoch (a UUID)", async () => {
    const a = openBuffer();
    const other = await tempDir();
    try {
      const b = DurableBuffer.open({ path: join(other.dir, "b.db"), maxBytes: 1000, logger: silentLogger() });
      expect(b.epoch).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
      expect(b.epoch).not.toBe(a.epoch);
      b.close();
    } finally {
      await other.cleanup();
    }
  });
});

describe("replace", () => {
  it("atomically swaps a batch for its parts, with new ids at the end and the original time", () => {
    const b = openBuffer();
    const big = b.append([...batch(2, 1), ...batch(3, 2)]);
    const after = b.append(batch(1, 9));
    const createdAt = b.next(1)[0]!.createdAt;
    const ids = b.replace(big, [batch(2, 1), batch(3, 2)]);
    expect(ids).toEqual([3, 4]);
    const got = b.next(10);
    expect(got.map((x) => x.id)).toEqual([after, 3, 4]);
    expect(got[1]).toMatchObject({ messages: batch(2, 1), items: 2, createdAt });
    expect(got[2]).toMatchObject({ messages: batch(3, 2), items: 3, createdAt });
    expect(b.stats()).toMatchObject({ batches: 3, items: 6, appendedItems: 6, oldestCreatedAt: createdAt });
  });

  it("does nothing for an id that is no longer stored", () => {
    const b = openBuffer();
    const id = b.append(batch(2));
    b.ack(id);
    expect(b.replace(id, [batch(1), batch(1)])).toEqual([]);
    expect(b.stats()).toMatchObject({ batches: 0, appendedItems: 2, ackedItems: 2 });
    expect(b.append(batch(1))).toBe(2);
  });

  it("refuses empty parts", () => {
    const b = openBuffer();
    const id = b.append(batch(2));
    expect(() => b.replace(id, [])).toThrow(expect.objectContaining({ code: "INTERNAL" }));
    expect(() => b.replace(id, [batch(1), []])).toThrow(expect.objectContaining({ code: "INTERNAL" }));
    expect(b.next(10).map((x) => x.id)).toEqual([id]);
  });
});

describe("drop", () => {
  it("deletes, counts the items under the reason and logs a warning", () => {
    const { logger, lines } = captureLogger();
    const b = openBuffer({ logger });
    const id = b.append(batch(7));
    b.append(batch(1));
    b.drop(id, "rejected", "HTTP 422: schema mismatch");
    expect(b.next(10).map((x) => x.id)).toEqual([2]);
    expect(b.stats()).toMatchObject({ dropped: { rejected: 7, buffer_full: 0, too_large: 0 }, droppedItems: 7, items: 1 });
    const warn = lines.filter((l) => l.level === WARN);
    expect(warn).toEqual([expect.objectContaining({ id, items: 7, reason: "rejected", detail: "HTTP 422: schema mismatch" })]);
    b.drop(id, "rejected", "again");
    expect(b.stats().droppedItems).toBe(7);
  });
});

describe("compression", () => {
  it("reads back batches written with and without compression", () => {
    let b = openBuffer({ compress: true });
    b.append(batch(1000, 1));
    const zBytes = b.next(1)[0]!.bytes;
    b.close();
    b = openBuffer({ compress: false });
    b.append(batch(1000, 2));
    const got = b.next(10);
    expect(got.map((x) => x.messages)).toEqual([batch(1000, 1), batch(1000, 2)]);
    expect(zBytes * 4).toBeLessThan(got[1]!.bytes);
  });

  it("drops a batch whose stored payload is damaged and keeps serving the rest", () => {
    const { logger, lines } = captureLogger();
    const path = join(t.dir(), "state", "buffer.db");
    let b = openBuffer({ logger, compress: true });
    b.append(batch(200, 1));
    b.append(batch(200, 2));
    b.close();
    const db = new DatabaseSync(path);
    // Flip bits inside the first payload; SQLite's structure stays valid.
    db.exec("UPDATE batches SET payload = CAST(substr(payload, 1, 20) || zeroblob(1) || substr(payload, 22) AS BLOB) WHERE id = 1");
    db.close();
    b = openBuffer({ logger });
    expect(b.next(10).map((x) => x.id)).toEqual([2]);
    expect(b.stats()).toMatchObject({ batches: 1, dropped: { rejected: 200 } });
    expect(lines.some((l) => l.event === "buffer_unreadable" && l.id === 1)).toBe(true);
  });
});

describe("stored JSON goes out as stored", () => {
  it("serves the stored bytes, parses them only on demand, and drops an uncompressed payload that is not a JSON array", () => {
    const { logger, lines } = captureLogger();
    const path = join(t.dir(), "state", "buffer.db");
    let b = openBuffer({ logger, compress: false });
    b.append(batch(3, 1));
    b.append(batch(3, 2));
    const [first] = b.next(1);
    expect(first!.json.toString("utf8")).toBe(JSON.stringify(batch(3, 1)));
    expect(first!.messages).toEqual(batch(3, 1));
    b.close();
    const db = new DatabaseSync(path);
    db.exec(`UPDATE batches SET payload = CAST('{"kind":"data"}' AS BLOB) WHERE id = 1`);
    db.close();
    b = openBuffer({ logger });
    expect(b.next(10).map((x) => x.id)).toEqual([2]);
    expect(b.stats()).toMatchObject({ batches: 1, dropped: { rejected: 3 } });
    expect(lines.some((l) => l.event === "buffer_unreadable" && l.id === 1 && /not a JSON array/.test(String(l.error)))).toBe(true);
    b.close();
  });
});

describe("open errors are KerfError BUFFER_IO naming the path", () => {
  function expectBufferIo(fn: () => unknown, pattern: RegExp): void {
    try {
      fn();
    } catch (err) {
      expect(isKerfError(err, "BUFFER_IO")).toBe(true);
      expect((err as Error).message).toContain(t.dir());
      expect((err as Error).message).toMatch(pattern);
      return;
    }
    throw new Error("expected a KerfError BUFFER_IO");
  }

  it("for a directory that cannot be created", () => {
    writeFileSync(join(t.dir(), "file"), "x");
    expectBufferIo(() => DurableBuffer.open({ path: join(t.dir(), "file", "sub", "b.db"), maxBytes: 1000, logger: silentLogger() }), /directory/);
  });

  it("for a file that is not a database", () => {
    const path = join(t.dir(), "b.db");
    writeFileSync(path, "this is not sqlite ".repeat(100));
    expectBufferIo(() => DurableBuffer.open({ path, maxBytes: 1000, logger: silentLogger() }), /not an SQLite database/);
  });

  it("for another program's SQLite database", () => {
    const path = join(t.dir(), "b.db");
    const db = new DatabaseSync(path);
    db.exec("CREATE TABLE t (x)");
    db.close();
    expectBufferIo(() => DurableBuffer.open({ path, maxBytes: 1000, logger: silentLogger() }), /another program/);
  });

  it("for a buffer already open in another connection", () => {
    openBuffer();
    expectBufferIo(() => openBuffer(), /in use by another process/);
  });

  it("for a corrupt file, via quick_check", () => {
    const path = join(t.dir(), "state", "buffer.db");
    const b = openBuffer({ compress: false });
    for (let i = 0; i < 50; i++) b.append(batch(50, i));
    b.close();
    const db = new DatabaseSync(path);
    const pageSize = (db.prepare("PRAGMA page_size").get() as { page_size: number }).page_size;
    const root = (db.prepare("SELECT rootpage FROM sqlite_schema WHERE name = 'batches_created_at'").get() as { rootpage: number }).rootpage;
    db.close();
    // Scribble over the index's root page: table pages stay readable, the index does not.
    const bytes = Buffer.alloc(pageSize - 200, 0x5a);
    const fd = openSync(path, "r+");
    writeSync(fd, bytes, 0, bytes.length, (root - 1) * pageSize + 100);
    closeSync(fd);
    try {
      openBuffer();
      throw new Error("expected a KerfError BUFFER_IO");
    } catch (err) {
      expect(isKerfError(err, "BUFFER_IO")).toBe(true);
      expect((err as Error).message).toContain(path);
      expect((err as Error).message).toMatch(/corrupt/);
      expect((err as { details: string[] }).details.length).toBeGreaterThan(1);
    }
  });
});
