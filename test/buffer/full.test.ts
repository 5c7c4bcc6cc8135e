import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { setTimeout as sleep } from "node:timers/promises";
import { join } from "node:path";
import { DurableBuffer, type BufferStats } from "../../src/buffer/buffer.ts";
import { batch, captureLogger, tempDir, WARN, type LogLine } from "./helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
let buffer: DurableBuffer | undefined;
let lines: LogLine[];

/** Uncompressed, so every batch(10, seq) has the same size for seq 1..9. */
function openFull(slots: number): { b: DurableBuffer; size: number } {
  const capture = captureLogger();
  lines = capture.lines;
  const probe = DurableBuffer.open({ path: join(dir, "probe.db"), maxBytes: 1e9, logger: capture.logger, compress: false });
  probe.append(batch(10, 1));
  const size = probe.next(1)[0]!.bytes;
  probe.close();
  buffer = DurableBuffer.open({ path: join(dir, "b.db"), maxBytes: Math.floor(size * (slots + 0.5)), logger: capture.logger, compress: false });
  return { b: buffer, size };
}

function invariant(s: BufferStats): void {
  expect(s.appendedItems).toBe(s.ackedItems + s.droppedItems + s.items);
}

const warnings = (): LogLine[] => lines.filter((l) => l.level === WARN);

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  buffer?.close();
  buffer = undefined;
  await cleanup();
});

describe("when full (dropOldest)", () => {
  it("drops the oldest batches, counts and logs them, and keeps the rest intact", () => {
    const { b, size } = openFull(5);
    const ids = Array.from({ length: 12 }, (_, i) => b.append(batch(10, (i % 9) + 1)));
    const kept = b.next(100);
    expect(kept.map((x) => x.id)).toEqual(ids.slice(7));
    expect(kept.map((x) => x.messages)).toEqual(ids.slice(7).map((_, i) => batch(10, ((i + 7) % 9) + 1)));
    const s = b.stats();
    expect(s).toMatchObject({ batches: 5, items: 50, bytes: 5 * size, appendedItems: 120, dropped: { buffer_full: 70, rejected: 0, too_large: 0 } });
    invariant(s);

    // The first eviction is logged at once; the rest of the burst waits for the interval.
    expect(warnings()).toHaveLength(1);
    expect(warnings()[0]).toMatchObject({ event: "buffer_full", batches: 1, items: 10, totalDroppedItems: 10 });
    b.close();
    expect(warnings()).toHaveLength(2);
    expect(warnings()[1]).toMatchObject({ event: "buffer_full", batches: 6, items: 60, totalDroppedItems: 70 });
  });

  it("logs a burst of evictions at most once per second, with the running total", async () => {
    const { b } = openFull(3);
    const t0 = Date.now();
    for (let i = 0; i < 300; i++) b.append(batch(10, (i % 9) + 1));
    const elapsed = Date.now() - t0;
    expect(warnings().length).toBeLessThanOrEqual(1 + Math.floor(elapsed / 1000));
    await sleep(1100);
    const w = warnings();
    expect(w.length).toBeLessThanOrEqual(2 + Math.floor(elapsed / 1000));
    // The timer wrote the remainder without another append.
    expect(w.reduce((n, l) => n + (l.batches as number), 0)).toBe(297);
    expect(w.at(-1)!.totalDroppedItems).toBe(2970);
    invariant(b.stats());
  });

  it("drops a batch larger than the whole buffer as too_large without evicting others", () => {
    const { b } = openFull(5);
    const small = [b.append(batch(10, 1)), b.append(batch(10, 2))];
    const huge = b.append(batch(1000, 3));
    expect(huge).toBe(3);
    expect(b.next(10).map((x) => x.id)).toEqual(small);
    const s = b.stats();
    expect(s).toMatchObject({ dropped: { too_large: 1000, buffer_full: 0 }, droppedItems: 1000, batches: 2 });
    invariant(s);
    expect(warnings()).toEqual([expect.objectContaining({ reason: "too_large", batches: 1, items: 1000 })]);
    // The id was consumed: the next batch does not reuse it.
    expect(b.append(batch(10, 4))).toBe(4);
  });

  it("an evicted batch that was in flight is a no-op when acked later", () => {
    const { b } = openFull(2);
    const first = b.append(batch(10, 1));
    const sent = b.next(1);
    expect(sent[0]!.id).toBe(first);
    b.append(batch(10, 2));
    b.append(batch(10, 3)); // evicts `first` while it is in flight
    b.ack(first);
    const s = b.stats();
    expect(s).toMatchObject({ ackedItems: 0, dropped: { buffer_full: 10 }, batches: 2 });
    invariant(s);
  });

  it("replace also respects the bound", () => {
    const { b } = openFull(4);
    for (let i = 1; i <= 4; i++) b.append(batch(10, i));
    // Two 10-item parts for one 10-item batch: one more slot than before.
    b.replace(2, [batch(10, 5), batch(10, 6)]);
    expect(b.next(10).map((x) => x.id)).toEqual([3, 4, 5, 6]);
    const s = b.stats();
    expect(s).toMatchObject({ appendedItems: 50, dropped: { buffer_full: 10 } });
    invariant(s);
  });
});
