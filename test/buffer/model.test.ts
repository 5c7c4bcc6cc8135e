/**
 * Model-based test: random sequences of append / ack / replace / drop / next / reopen run
 * against the real buffer and against a plain in-memory model of what it should hold.
 * After every step the stored batches and all counters must be equal.
 */
import { afterAll, beforeAll, expect, it } from "vitest";
import fc from "fast-check";
import { join } from "node:path";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import type { DropReason } from "../../src/message.ts";
import { encodeJson } from "../../src/buffer/codec.ts";
import { silentLogger } from "../../src/log.ts";
import { itemCount, type Message } from "../../src/message.ts";
import { tempDir } from "./helpers.ts";

interface ModelBatch {
  id: number;
  messages: Message[];
  items: number;
  bytes: number;
  /** createdAt must lie in [lo, hi]: the clock before and after the append. */
  lo: number;
  hi: number;
}

class Model {
  batches: ModelBatch[] = [];
  lastId = 0;
  /** Batches up to this id may have been sent: never merged. */
  attemptedThrough = 0;
  appended = 0;
  acked = 0;
  dropped: Record<DropReason, number> = { buffer_full: 0, rejected: 0, too_large: 0, tampered: 0 };
  compress: boolean;
  readonly maxBytes: number;
  constructor(maxBytes: number, compress: boolean) {
    this.maxBytes = maxBytes;
    this.compress = compress;
  }

  /** Mirrors DurableBuffer's insert: dropOldest, or too_large for a batch over maxBytes. */
  insert(messages: Message[], lo: number, hi: number): number {
    const items = itemCount(messages);
    const bytes = encodeJson(messages, this.compress).payload.byteLength;
    const id = ++this.lastId;
    if (bytes > this.maxBytes) {
      this.dropped.too_large += items;
      return id;
    }
    let stored = this.batches.reduce((n, b) => n + b.bytes, 0);
    while (stored + bytes > this.maxBytes) {
      const oldest = this.batches.shift()!;
      stored -= oldest.bytes;
      this.dropped.buffer_full += oldest.items;
    }
    this.batches.push({ id, messages, items, bytes, lo, hi });
    return id;
  }

  remove(id: number): ModelBatch | undefined {
    const i = this.batches.findIndex((b) => b.id === id);
    return i < 0 ? undefined : this.batches.splice(i, 1)[0];
  }

  /** Mirrors DurableBuffer.nextMerged: consecutive never-sent batches merged within the limits. */
  nextMerged(limit: number, exclude: ReadonlySet<number>, maxItems: number, maxBytes: number): ModelBatch[] {
    const groups: ModelBatch[][] = [];
    let group: ModelBatch[] = [];
    let items = 0;
    let bytes = 0;
    const close = () => {
      if (group.length > 0) groups.push(group);
      group = [];
    };
    for (const b of this.batches) {
      if (exclude.has(b.id)) {
        close();
        if (groups.length === limit) break;
        continue;
      }
      const json = Buffer.byteLength(JSON.stringify(b.messages));
      if (group.length > 0 && b.id > this.attemptedThrough && items + b.items <= maxItems && bytes + json + 1 <= maxBytes) {
        group.push(b);
        items += b.items;
        bytes += json + 1;
        continue;
      }
      close();
      if (groups.length === limit) break;
      group = [b];
      items = b.items;
      bytes = json;
      if (b.id <= this.attemptedThrough) close();
      if (groups.length === limit) break;
    }
    close();
    return groups.map((g) => {
      if (g.length === 1) return g[0]!;
      const messages = g.flatMap((b) => b.messages);
      const bytes = encodeJson(messages, this.compress).payload.byteLength;
      const stored = this.batches.reduce((n, b) => n + b.bytes, 0);
      if (stored - g.reduce((n, b) => n + b.bytes, 0) + bytes > this.maxBytes) return g[0]!;
      const merged: ModelBatch = {
        id: g[g.length - 1]!.id,
        messages,
        items: g.reduce((n, b) => n + b.items, 0),
        bytes,
        lo: Math.min(...g.map((b) => b.lo)),
        hi: Math.min(...g.map((b) => b.hi)),
      };
      const at = this.batches.indexOf(g[0]!);
      this.batches = this.batches.filter((b) => !g.includes(b));
      this.batches.splice(at, 0, merged);
      return merged;
    });
  }

  /** An id that is stored (most picks) or one that is not (acked, dropped or never used). */
  pick(n: number): number {
    return n < this.batches.length ? this.batches[n]!.id : this.lastId + 1 - (n % 3);
  }
}

interface Real {
  buffer: DurableBuffer;
  path: string;
  maxBytes: number;
}

function assertSame(m: Model, r: Real): void {
  const stored = r.buffer.next(1_000_000);
  expect(stored.map((b) => b.id)).toEqual(m.batches.map((b) => b.id));
  stored.forEach((b, i) => {
    const e = m.batches[i]!;
    expect(b.messages).toEqual(e.messages);
    expect(b.items).toBe(e.items);
    expect(b.bytes).toBe(e.bytes);
    expect(b.createdAt).toBeGreaterThanOrEqual(e.lo);
    expect(b.createdAt).toBeLessThanOrEqual(e.hi);
  });
  const s = r.buffer.stats();
  const items = m.batches.reduce((n, b) => n + b.items, 0);
  const droppedItems = m.dropped.buffer_full + m.dropped.rejected + m.dropped.too_large;
  expect(s).toEqual({
    batches: m.batches.length,
    items,
    bytes: m.batches.reduce((n, b) => n + b.bytes, 0),
    appendedItems: m.appended,
    ackedItems: m.acked,
    dropped: m.dropped,
    droppedItems,
    oldestCreatedAt: stored.length === 0 ? null : Math.min(...stored.map((b) => b.createdAt)),
  });
  expect(s.appendedItems).toBe(s.ackedItems + s.droppedItems + s.items);
  expect(s.bytes).toBeLessThanOrEqual(m.maxBytes);
}

class Append implements fc.Command<Model, Real> {
  readonly messages: Message[];
  constructor(messages: Message[]) {
    this.messages = messages;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const lo = Date.now();
    const id = r.buffer.append(this.messages);
    const hi = Date.now();
    m.appended += itemCount(this.messages);
    expect(id).toBe(m.insert(this.messages, lo, hi));
    assertSame(m, r);
  }
  toString(): string {
    return `append(${itemCount(this.messages)} items)`;
  }
}

class Ack implements fc.Command<Model, Real> {
  readonly n: number;
  constructor(n: number) {
    this.n = n;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const id = m.pick(this.n);
    r.buffer.ack(id);
    const removed = m.remove(id);
    if (removed) m.acked += removed.items;
    assertSame(m, r);
  }
  toString(): string {
    return `ack(#${this.n})`;
  }
}

class Drop implements fc.Command<Model, Real> {
  readonly n: number;
  readonly reason: DropReason;
  constructor(n: number, reason: DropReason) {
    this.n = n;
    this.reason = reason;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const id = m.pick(this.n);
    r.buffer.drop(id, this.reason, "model test");
    const removed = m.remove(id);
    if (removed) m.dropped[this.reason] += removed.items;
    assertSame(m, r);
  }
  toString(): string {
    return `drop(#${this.n}, ${this.reason})`;
  }
}

class Replace implements fc.Command<Model, Real> {
  readonly n: number;
  readonly parts: Message[][];
  constructor(n: number, parts: Message[][]) {
    this.n = n;
    this.parts = parts;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const id = m.pick(this.n);
    const ids = r.buffer.replace(id, this.parts);
    const removed = m.remove(id);
    if (!removed) {
      expect(ids).toEqual([]);
    } else {
      m.appended += this.parts.reduce((n, p) => n + itemCount(p), 0) - removed.items;
      expect(ids).toEqual(this.parts.map((p) => m.insert(p, removed.lo, removed.hi)));
    }
    assertSame(m, r);
  }
  toString(): string {
    return `replace(#${this.n}, ${this.parts.length} parts)`;
  }
}

class Next implements fc.Command<Model, Real> {
  readonly limit: number;
  readonly exclude: number[];
  constructor(limit: number, exclude: number[]) {
    this.limit = limit;
    this.exclude = exclude;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const exclude = new Set(this.exclude.map((n) => m.pick(n)));
    const expected = m.batches.filter((b) => !exclude.has(b.id)).slice(0, this.limit);
    const got = r.buffer.next(this.limit, exclude);
    expect(got.map((b) => b.id)).toEqual(expected.map((b) => b.id));
    expect(got.map((b) => b.messages)).toEqual(expected.map((b) => b.messages));
  }
  toString(): string {
    return `next(${this.limit}, exclude #${this.exclude.join(",")})`;
  }
}

class NextMerged implements fc.Command<Model, Real> {
  readonly limit: number;
  readonly exclude: number[];
  readonly maxItems: number;
  readonly maxBytes: number;
  constructor(limit: number, exclude: number[], maxItems: number, maxBytes: number) {
    this.limit = limit;
    this.exclude = exclude;
    this.maxItems = maxItems;
    this.maxBytes = maxBytes;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const exclude = new Set(this.exclude.map((n) => m.pick(n)));
    const expected = m.nextMerged(this.limit, exclude, this.maxItems, this.maxBytes);
    const got = r.buffer.nextMerged(this.limit, exclude, { maxItems: this.maxItems, maxBytes: this.maxBytes });
    expect(got.map((b) => b.id)).toEqual(expected.map((b) => b.id));
    expect(got.map((b) => b.messages)).toEqual(expected.map((b) => b.messages));
    expect(got.map((b) => b.items)).toEqual(expected.map((b) => b.items));
    assertSame(m, r);
  }
  toString(): string {
    return `nextMerged(${this.limit}, exclude #${this.exclude.join(",")}, ${this.maxItems} items, ${this.maxBytes} bytes)`;
  }
}

class MarkAttempted implements fc.Command<Model, Real> {
  readonly n: number;
  constructor(n: number) {
    this.n = n;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const id = m.pick(this.n);
    r.buffer.markAttempted(id);
    m.attemptedThrough = Math.max(m.attemptedThrough, id);
    assertSame(m, r);
  }
  toString(): string {
    return `markAttempted(#${this.n})`;
  }
}

class Reopen implements fc.Command<Model, Real> {
  readonly compress: boolean;
  constructor(compress: boolean) {
    this.compress = compress;
  }
  check(): boolean {
    return true;
  }
  run(m: Model, r: Real): void {
    const epoch = r.buffer.epoch;
    r.buffer.close();
    r.buffer = DurableBuffer.open({ path: r.path, maxBytes: r.maxBytes, logger: silentLogger(), compress: this.compress });
    m.compress = this.compress;
    expect(r.buffer.epoch).toBe(epoch);
    assertSame(m, r);
  }
  toString(): string {
    return `reopen(compress=${this.compress})`;
  }
}

const item = fc.record({
  key: fc.constantFrom("load.c00042", "temp.t1", "speed", "state.door"),
  v: fc.oneof(fc.integer({ min: -1e6, max: 1e6 }), fc.double({ noNaN: true, noDefaultInfinity: true }).map((d) => (d === 0 ? 0 : d)), fc.string({ maxLength: 12 }), fc.boolean()),
  q: fc.constantFrom(0, 0x80000000, 0x40000000),
  t: fc.constant("2026-11-23T20:00:00.123Z"),
});
const message: fc.Arbitrary<Message> = fc.oneof(
  { weight: 4, arbitrary: fc.record({ kind: fc.constant("data" as const), machine: fc.constant("press-01"), items: fc.array(item, { minLength: 1, maxLength: 15 }) }) },
  fc.record({ kind: fc.constant("event" as const), machine: fc.constant("press-01"), key: fc.constant("alarm"), t: fc.constant("2026-11-23T20:00:00Z"), fields: fc.dictionary(fc.string({ maxLength: 5 }), fc.integer()) }),
  fc.record({ kind: fc.constant("status" as const), machine: fc.constant("press-01"), state: fc.constantFrom("online" as const, "offline" as const), t: fc.constant("2026-11-23T20:00:00Z") }),
);
const messages = fc.array(message, { minLength: 1, maxLength: 3 });
const pickIndex = fc.nat({ max: 8 });

const commands = fc.commands(
  [
    // Appends weigh more, so the buffer holds several batches for the other commands.
    messages.map((ms) => new Append(ms)),
    messages.map((ms) => new Append(ms)),
    messages.map((ms) => new Append(ms)),
    pickIndex.map((n) => new Ack(n)),
    fc.tuple(pickIndex, fc.constantFrom<DropReason>("rejected", "too_large", "buffer_full")).map(([n, r]) => new Drop(n, r)),
    fc.tuple(pickIndex, fc.array(messages, { minLength: 1, maxLength: 3 })).map(([n, p]) => new Replace(n, p)),
    fc.tuple(fc.nat({ max: 5 }), fc.array(pickIndex, { maxLength: 3 })).map(([l, e]) => new Next(l, e)),
    fc.boolean().map((c) => new Reopen(c)),
    // merging needs several never-sent batches in a row: asked for as often as appends come
    ...[1, 2, 3].map(() => fc.tuple(fc.nat({ max: 4 }), fc.array(pickIndex, { maxLength: 2 }), fc.constantFrom(20, 1000, 1000), fc.constantFrom(2000, 1_000_000)).map(([l, e, i, b]) => new NextMerged(l, e, i, b))),
    pickIndex.map((n) => new MarkAttempted(n)),
  ],
  { maxCommands: 60 },
);

let dir: string;
let cleanup: () => Promise<void>;
beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterAll(async () => {
  await cleanup();
});

it("matches the in-memory model after every step", () => {
  let run = 0;
  fc.assert(
    fc.property(fc.constantFrom(600, 1500, 5000), fc.boolean(), commands, (maxBytes, compress, cmds) => {
      const path = join(dir, `run-${run++}`, "buffer.db");
      const real: Real = { buffer: DurableBuffer.open({ path, maxBytes, logger: silentLogger(), compress }), path, maxBytes };
      try {
        fc.modelRun(() => ({ model: new Model(maxBytes, compress), real }), cmds);
      } finally {
        real.buffer.close();
      }
    }),
    { numRuns: 150 },
  );
});
