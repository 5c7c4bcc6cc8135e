import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { DatabaseSync } from "node:sqlite";
import { join } from "node:path";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import { silentLogger } from "../../src/log.ts";
import type { DataMessage } from "../../src/message.ts";
import { batch, tempDir } from "./helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
let buffer: DurableBuffer;
const path = () => join(dir, "buffer.db");
const open = () => DurableBuffer.open({ path: path(), maxBytes: 10_000_000, logger: silentLogger() });
const LIMITS = { maxItems: 1000, maxBytes: 1_000_000 };
const values = (b: { messages: unknown[] }) => (b.messages as DataMessage[]).flatMap((m) => m.items.map((i) => i.v));

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  buffer = open();
});
afterEach(async () => {
  buffer.close();
  await cleanup();
});

describe("nextMerged", () => {
  it("merges consecutive never-sent batches into the newest one's id, in order, and keeps every count", () => {
    const ids = [1, 2, 3, 4, 5].map((seq) => buffer.append(batch(10, seq)));
    const [merged, ...rest] = buffer.nextMerged(4, new Set(), LIMITS);
    expect(rest).toEqual([]);
    expect(merged!.id).toBe(ids[4]);
    expect(merged!.items).toBe(50);
    expect(values(merged!)).toEqual([1, 2, 3, 4, 5].flatMap((seq) => Array.from({ length: 10 }, (_, i) => seq * 100_000 + i)));
    // what is stored is what was returned
    expect(buffer.next(10).map((b) => [b.id, b.items])).toEqual([[ids[4], 50]]);
    const stats = buffer.stats();
    expect(stats).toMatchObject({ batches: 1, items: 50, appendedItems: 50 });
    buffer.ack(merged!.id);
    expect(buffer.stats()).toMatchObject({ batches: 0, items: 0, ackedItems: 50 });
  });

  it("never merges a batch that went into a request, also after a restart", () => {
    const ids = [1, 2, 3, 4, 5].map((seq) => buffer.append(batch(10, seq)));
    buffer.markAttempted(ids[2]!);
    buffer.close();
    buffer = open();
    expect(buffer.nextMerged(10, new Set(), LIMITS).map((b) => [b.id, b.items])).toEqual([
      [ids[0], 10],
      [ids[1], 10],
      [ids[2], 10],
      [ids[4], 20],
    ]);
  });

  it("stops a merge at a batch in flight and at the limits", () => {
    const ids = [1, 2, 3, 4, 5, 6, 7].map((seq) => buffer.append(batch(10, seq)));
    const got = buffer.nextMerged(10, new Set([ids[2]!]), { maxItems: 30, maxBytes: 1_000_000 });
    expect(got.map((b) => [b.id, b.items])).toEqual([
      [ids[1], 20],
      [ids[5], 30],
      [ids[6], 10],
    ]);
    const small = buffer.nextMerged(10, new Set(), { maxItems: 1000, maxBytes: got[0]!.json.length });
    expect(small.map((b) => b.id)).toEqual([ids[1], ids[2], ids[5], ids[6]]);
  });

  it("returns at most `limit` batches", () => {
    const ids = [1, 2, 3, 4].map((seq) => buffer.append(batch(10, seq)));
    buffer.markAttempted(ids[3]!);
    expect(buffer.nextMerged(2, new Set(), LIMITS).map((b) => b.id)).toEqual([ids[0], ids[1]]);
  });

  it("treats every batch of a buffer written before the mark existed as possibly sent", () => {
    const ids = [1, 2, 3].map((seq) => buffer.append(batch(10, seq)));
    buffer.close();
    const db = new DatabaseSync(path());
    db.exec("DELETE FROM meta WHERE name = 'attempted_through'");
    db.close();
    buffer = open();
    const later = buffer.append(batch(10, 4));
    const later2 = buffer.append(batch(10, 5));
    expect(buffer.nextMerged(10, new Set(), LIMITS).map((b) => [b.id, b.items])).toEqual([
      [ids[0], 10],
      [ids[1], 10],
      [ids[2], 10],
      [later2, 20],
    ]);
    expect(later2).toBe(later + 1);
  });
});
