import { afterEach, beforeEach, describe, expect, it, vi } from "vitest";
import { join } from "node:path";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import { BufferWriter } from "../../src/buffer/writer.ts";
import { chunkMessages } from "../../src/uplink/batches.ts";
import { KerfError } from "../../src/errors.ts";
import { silentLogger } from "../../src/log.ts";
import type { DataMessage, Message } from "../../src/message.ts";
import { captureLogger, dataMessage, tempDir } from "./helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
let buffer: DurableBuffer;
const writers: BufferWriter[] = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
  buffer = DurableBuffer.open({ path: join(dir, "buffer.db"), maxBytes: 50_000_000, logger: silentLogger() });
});
afterEach(async () => {
  for (const w of writers.splice(0)) w.close();
  buffer.close();
  await cleanup();
});

/** The real buffer behind a disk whose commits take `fsyncMs` on a clock the test owns. */
function slowDisk(fsyncMs: number) {
  let clock = 1_000;
  const calls: number[] = [];
  let failNext = 0;
  return {
    now: () => clock,
    calls,
    failNext: (n: number) => (failNext = n),
    advance: (ms: number) => (clock += ms),
    appendMany: (batches: readonly Message[][], options?: { dropped?: number }) => {
      clock += fsyncMs;
      if (failNext > 0) {
        failNext--;
        throw new KerfError("BUFFER_IO", `buffer ${dir}: cannot append: SQLITE_FULL: database or disk is full`);
      }
      calls.push(batches.length);
      return buffer.appendMany(batches, options);
    },
  };
}

function writer(options: Partial<ConstructorParameters<typeof BufferWriter>[0]> & Pick<ConstructorParameters<typeof BufferWriter>[0], "buffer">): BufferWriter {
  const w = new BufferWriter({ maxItems: 1000, logger: silentLogger(), ...options });
  writers.push(w);
  return w;
}

/** Every stored value, oldest batch first. */
function storedValues(): unknown[] {
  return buffer.next(1_000_000).flatMap((b) => b.messages.flatMap((m) => (m.kind === "data" ? m.items.map((i) => i.v) : [])));
}

describe("BufferWriter", () => {
  it("commits each write before returning while commits are quick", () => {
    const disk = slowDisk(0.3);
    const w = writer({ buffer: disk, now: disk.now });
    for (let seq = 0; seq < 5; seq++) {
      disk.advance(10); // publish responses 10 ms apart
      w.write([dataMessage(100, seq)]);
      expect(buffer.stats().items).toBe(100 * (seq + 1));
    }
    expect(disk.calls).toEqual([1, 1, 1, 1, 1]);
    expect(w.health().pendingItems).toBe(0);
  });

  it("groups writes under one commit when commits are slow, so that they take at most the duty cycle", async () => {
    const disk = slowDisk(50);
    let commits = 0;
    const w = writer({ buffer: disk, now: disk.now, dutyCycle: 0.2, onCommit: () => commits++ });
    w.write([dataMessage(10, 0)]);
    expect(disk.calls).toEqual([1]);
    // The next commit may start 200 ms (4 × 50) after this one ended; these writes wait for it.
    for (let seq = 1; seq <= 8; seq++) {
      disk.advance(10);
      w.write([dataMessage(10, seq)]);
    }
    expect(disk.calls).toEqual([1]);
    expect(w.health().pendingItems).toBe(80);
    await vi.waitFor(() => expect(commits).toBe(2), { timeout: 10_000 });
    // eight writes, one transaction; batches up to maxItems
    expect(disk.calls).toEqual([1, 1]);
    expect(storedValues()).toEqual(Array.from({ length: 9 }, (_, seq) => Array.from({ length: 10 }, (_, i) => seq * 100_000 + i)).flat());
    expect(w.health().pendingItems).toBe(0);
  });

  it("cuts what one commit carries into batches of at most maxItems", () => {
    const disk = slowDisk(0);
    const w = writer({ buffer: disk, now: disk.now, maxItems: 250 });
    w.write([dataMessage(600, 1)]);
    expect(buffer.next(10).map((b) => b.items)).toEqual([250, 250, 100]);
  });

  it("keeps writes while the buffer refuses them, retries, and loses nothing", async () => {
    const disk = slowDisk(0);
    const { logger, lines } = captureLogger();
    const w = writer({ buffer: disk, now: disk.now, logger });
    disk.failNext(3);
    w.write([dataMessage(5, 0)]);
    w.write([dataMessage(5, 1)]);
    expect(w.health()).toMatchObject({ failures: 1, pendingItems: 10, lastError: expect.stringContaining("disk is full") });
    expect(lines.filter((l) => l.level === 50).map((l) => l.msg)).toEqual([expect.stringContaining("cannot write to the buffer")]);
    await vi.waitFor(() => expect(w.health().failures).toBe(0), { timeout: 20_000 });
    expect(storedValues()).toEqual([0, 1, 2, 3, 4, 100_000, 100_001, 100_002, 100_003, 100_004]);
    expect(lines.some((l) => l.msg === "the buffer is writable again")).toBe(true);
  });

  it("drops the oldest waiting values past its limit and counts them once the buffer takes writes again", async () => {
    const disk = slowDisk(0);
    const w = writer({ buffer: disk, now: disk.now, maxPendingItems: 25 });
    disk.failNext(1_000_000);
    for (let seq = 0; seq < 5; seq++) w.write([dataMessage(10, seq)]);
    expect(w.health()).toMatchObject({ pendingItems: 20, droppedItems: 30 });
    disk.failNext(0);
    expect(w.commit()).toBe(true);
    const stats = buffer.stats();
    expect(stats.dropped.buffer_full).toBe(30);
    expect(stats.items).toBe(20);
    // appended = acked + dropped + stored
    expect(stats.appendedItems).toBe(stats.ackedItems + stats.droppedItems + stats.items);
    expect(storedValues()).toEqual([...[3, 4].flatMap((seq) => Array.from({ length: 10 }, (_, i) => seq * 100_000 + i))]);
  });
});

describe("chunkMessages", () => {
  const status: Message = { kind: "status", machine: "m", state: "online", t: "2026-01-01T00:00:00.000Z" };
  it("packs messages up to maxItems and cuts a larger data message by its items", () => {
    const big = dataMessage(7, 1);
    const chunks = chunkMessages([dataMessage(2, 0), status, big], 4);
    expect(chunks.map((c) => c.map((m) => (m.kind === "data" ? m.items.length : m.kind)))).toEqual([[2, "status"], [4], [3]]);
    expect(chunks.slice(1).flatMap((c) => (c[0] as DataMessage).items)).toEqual(big.items);
  });
});
