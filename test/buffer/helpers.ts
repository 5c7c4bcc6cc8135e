import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pino, type Logger } from "pino";
import type { DataMessage, Message } from "../../src/types.ts";

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
