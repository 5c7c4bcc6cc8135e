/**
 * The file reuses space: a steady flow keeps db + WAL under a fixed bound, and the file
 * shrinks after a backlog drains.
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import { join } from "node:path";
import { DurableBuffer, diskBytes } from "../../src/buffer/buffer.ts";
import { silentLogger } from "../../src/log.ts";
import { batch, tempDir } from "./helpers.ts";

const MB = 1024 * 1024;
let dir: string;
let cleanup: () => Promise<void>;
let buffer: DurableBuffer | undefined;


beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  buffer?.close();
  buffer = undefined;
  await cleanup();
});

it("keeps db + WAL under a fixed bound for a steady flow", () => {
  const path = join(dir, "buffer.db");
  // Uncompressed 1000-item batches (~70 KB each) so the volume is large.
  buffer = DurableBuffer.open({ path, maxBytes: 1 << 30, logger: silentLogger(), compress: false });
  const pool = Array.from({ length: 10 }, (_, i) => batch(1000, i + 1));
  let written = 0;
  let largest = 0;
  for (let i = 0; i < 400; i++) {
    buffer.append(pool[i % pool.length]!);
    // The sender keeps a backlog of about ten batches.
    if (buffer.stats().batches > 10) buffer.ack(buffer.next(1)[0]!.id);
    written += buffer.next(1)[0]!.bytes;
    largest = Math.max(largest, diskBytes(path));
  }
  expect(written).toBeGreaterThan(25 * MB);
  // Backlog ~0.8 MB, plus a WAL of at most ~1000 pages between checkpoints, plus at most 4 MiB
  // of acknowledged batches waiting for the snapshot of what was delivered.
  expect(largest).toBeLessThan(11 * MB);
});

it("shrinks the file after a backlog drains, while open and at close", () => {
  const path = join(dir, "buffer.db");
  buffer = DurableBuffer.open({ path, maxBytes: 1 << 30, logger: silentLogger(), compress: false });
  for (let i = 0; i < 600; i++) buffer.append(batch(100, i + 1));
  const full = diskBytes(path);
  expect(full).toBeGreaterThan(4 * MB);
  const sizes: number[] = [];
  for (const b of buffer.next(1000)) {
    buffer.ack(b.id);
    sizes.push(diskBytes(path));
  }
  expect(buffer.stats().batches).toBe(0);
  // Once 4 MiB of acknowledged batches waited, a snapshot deleted them and the maintenance
  // after 500 deletions vacuumed the free pages and truncated the WAL.
  expect(sizes.at(-1)).toBeLessThan(1.5 * MB);
  buffer.close();
  buffer = undefined;
  expect(diskBytes(path)).toBeLessThan(100 * 1024);

  // Space is reused after reopen, and ids go on.
  buffer = DurableBuffer.open({ path, maxBytes: 1 << 30, logger: silentLogger(), compress: false });
  expect(buffer.append(batch(100, 1))).toBe(601);
});
