/**
 * Micro-benchmark of the durable buffer: sustained append + next + ack throughput and
 * bytes on disk per item, compressed vs not, in clear vs encrypted (AES-256-GCM), for batches
 * of 1000 and of 10 items.
 *
 *   npx node src/bench/buffer.ts [--dir DIR] [--seconds N]
 *
 * DIR defaults to the OS temp dir; point it at the disk the state dir will live on,
 * since fsync cost decides the small-batch figures.
 */
import { createSecretKey, randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { parseArgs } from "node:util";
import { DurableBuffer, diskBytes } from "../buffer/buffer.ts";
import { silentLogger } from "../log.ts";
import type { Message } from "../message.ts";

const { values } = parseArgs({ options: { dir: { type: "string" }, seconds: { type: "string", default: "3" } } });
const seconds = Number(values.seconds);
const base = mkdtempSync(join(values.dir ?? tmpdir(), "kerf-bench-buffer-"));

/** Realistic data messages: keys like load.c00042, integer values, ISO timestamps. */
function batch(items: number, seq: number): Message[] {
  const start = Date.UTC(2026, 10, 23, 20, 0, 0);
  return [
    {
      kind: "data",
      machine: "press-01",
      items: Array.from({ length: items }, (_, i) => ({
        key: `load.c${String((seq * items + i) % 100_000).padStart(5, "0")}`,
        v: Math.round(Math.random() * 100_000),
        q: 0,
        t: new Date(start + seq * 100 + i).toISOString(),
      })),
    },
  ];
}


function run(items: number, compress: boolean, encrypt: boolean): void {
  const path = join(base, `b-${items}-${compress}-${encrypt}.db`);
  const encryption = encrypt ? { encryption: { key: createSecretKey(randomBytes(32)) } } : {};
  const buffer = DurableBuffer.open({ path, maxBytes: 1 << 30, logger: silentLogger(), compress, ...encryption });
  const pool = Array.from({ length: 64 }, (_, i) => batch(items, i));

  // Throughput: the sender keeps a small backlog, reads 4 at a time, acks each.
  let moved = 0;
  let seq = 0;
  const t0 = performance.now();
  while (performance.now() - t0 < seconds * 1000) {
    buffer.append(pool[seq++ % pool.length]!);
    if (buffer.stats().batches >= 8) {
      for (const b of buffer.next(4)) {
        buffer.ack(b.id);
        moved += b.items;
      }
    }
  }
  const rate = moved / ((performance.now() - t0) / 1000);

  // Bytes on disk per item: a backlog of 100k items, then the file size.
  for (const b of buffer.next(1_000_000)) buffer.ack(b.id);
  const count = Math.ceil(100_000 / items);
  for (let i = 0; i < count; i++) buffer.append(pool[i % pool.length]!);
  const stored = buffer.stats().bytes;
  buffer.close();
  const onDisk = diskBytes(path);
  console.log(
    `${String(items).padStart(5)} items/batch  compress=${String(compress).padEnd(5)}  encrypt=${String(encrypt).padEnd(5)}  ` +
      `${Math.round(rate).toLocaleString("en").padStart(10)} items/s append+next+ack  ` +
      `${(stored / (count * items)).toFixed(1).padStart(5)} payload B/item  ${(onDisk / (count * items)).toFixed(1).padStart(5)} file B/item`,
  );
}

try {
  for (const items of [1000, 10]) for (const compress of [true, false]) for (const encrypt of [false, true]) run(items, compress, encrypt);
} finally {
  rmSync(base, { recursive: true, force: true });
}
