import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import { afterEach, beforeEach } from "vitest";
import { DurableBuffer, type BufferOptions } from "../../src/buffer/buffer.ts";
import { silentLogger } from "../../src/log.ts";
import type { DataMessage, Message } from "../../src/message.ts";

/** A temp dir per test, removed afterwards. */
export async function tempDir(): Promise<{ dir: string; cleanup: () => Promise<void> }> {
  const dir = await mkdtemp(join(tmpdir(), "kerf-buffer-test-"));
  return { dir, cleanup: () => rm(dir, { recursive: true, force: true }) };
}

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A real pino logger whose output is parsed into `lines`. */
export function captureLogger(level = "debug"): { logger: Logger; lines: LogLine[] } {
  const lines: LogLine[] = [];
  const logger = pino({ level }, { write: (s: string) => void lines.push(JSON.parse(s) as LogLine) });
  return { logger, lines };
}

export const WARN = 40;

/** A data message of `n` items; `seq` makes keys and values distinct per batch. */
export function dataMessage(n: number, seq = 0): DataMessage {
  return {
    kind: "data",
    machine: "press-01",
    items: Array.from({ length: n }, (_, i) => ({
      key: `load.c${String((seq * 1000 + i) % 100_000).padStart(5, "0")}`,
      v: seq * 100_000 + i,
      q: 0,
      t: "2026-11-23T20:00:00.123Z",
    })),
  };
}

export function batch(n: number, seq = 0): Message[] {
  return [dataMessage(n, seq)];
}

/**
 * Per test: a temp dir and the buffers opened at `file` in it (`open`), closed and removed
 * afterwards. Registers its own beforeEach and afterEach.
 */
export function bufferPerTest(file: string, defaults: Partial<BufferOptions> = {}) {
  let dir = "";
  let cleanup = async () => undefined as void;
  const opened: DurableBuffer[] = [];
  beforeEach(async () => {
    ({ dir, cleanup } = await tempDir());
  });
  afterEach(async () => {
    for (const b of opened.splice(0)) b.close();
    await cleanup();
  });
  return {
    dir: () => dir,
    path: () => join(dir, file),
    open(options: Partial<BufferOptions> = {}): DurableBuffer {
      const b = DurableBuffer.open({ path: join(dir, file), maxBytes: 10_000_000, logger: silentLogger(), ...defaults, ...options });
      opened.push(b);
      return b;
    },
  };
}
