/**
 * A real child process appends (and acks) in a loop and is killed with SIGKILL at a
 * random point. Every id it reported as appended must be stored with intact content,
 * every id it reported as acked must be gone, and the file must check out.
 */
import { afterEach, beforeEach, expect, it } from "vitest";
import { spawn, type ChildProcess } from "node:child_process";
import { createSecretKey, randomBytes } from "node:crypto";
import { once } from "node:events";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import { DurableBuffer } from "../../src/buffer/buffer.ts";
import { silentLogger } from "../../src/log.ts";
import { loopBatch, seqOf } from "./fixtures/loop-batch.ts";
import { tempDir } from "./helpers.ts";

const script = fileURLToPath(new URL("./fixtures/append-loop.ts", import.meta.url));

let dir: string;
let cleanup: () => Promise<void>;
const children: ChildProcess[] = [];

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir());
});
afterEach(async () => {
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
  await cleanup();
});

/** Runs the child until it has reported `appends` appends, then SIGKILLs it. Returns its complete lines. */
async function runAndKill(path: string, firstSeq: number, compress: boolean, appends: number, snapshotIntervalMs: number, keyHex?: string): Promise<string[]> {
  const child = spawn(process.execPath, [script, path, String(firstSeq), compress ? "1" : "0", String(snapshotIntervalMs), ...(keyHex ? [keyHex] : [])], { stdio: ["ignore", "pipe", "pipe"] });
  children.push(child);
  let out = "";
  let err = "";
  let seen = 0;
  child.stderr!.on("data", (d: Buffer) => (err += d.toString()));
  child.stdout!.on("data", (d: Buffer) => {
    const text = d.toString();
    out += text;
    for (const c of text) if (c === "\n") seen++;
    // Lines are about half appends; kill mid-stream, while it keeps writing.
    if (seen >= appends * 1.3 && child.signalCode === null) child.kill("SIGKILL");
  });
  const [code, signal] = (await once(child, "exit")) as [number | null, string | null];
  expect(signal, `child exited by itself (code ${code}): ${err}`).toBe("SIGKILL");
  // Only complete lines count: a partial last line was not fully reported.
  return out.split("\n").slice(0, -1);
}

it("loses nothing that append returned, across repeated SIGKILLs", () => killRepeatedly());

it("loses nothing and finds nothing tampered in an encrypted buffer, across repeated SIGKILLs", () => killRepeatedly(randomBytes(32).toString("hex")));

async function killRepeatedly(keyHex?: string): Promise<void> {
  const path = join(dir, "buffer.db");
  const encryption = keyHex ? { encryption: { key: createSecretKey(Buffer.from(keyHex, "hex")) } } : {};
  const appended = new Map<number, number>(); // id -> seq
  const acked = new Set<number>();
  const ackStarted = new Set<number>();
  let lastId = 0;
  /** Per key index, the highest seq reported appended whose batch holds it. */
  const lastSeqOfKey = new Map<number, number>();
  let lastSeq = 0;

  for (let round = 0; round < 4; round++) {
    // Snapshots of what was delivered: on every append and ack in some rounds, none in others.
    const lines = await runAndKill(path, round * 100_000, round % 2 === 0, 30 + Math.floor(Math.random() * 300), round < 2 ? 0 : 60_000, keyHex);
    const ids: number[] = [];
    for (const line of lines) {
      const [kind, id, seq] = line.split(" ");
      if (kind === "a") {
        appended.set(Number(id), Number(seq));
        ids.push(Number(id));
        const items = loopBatch(Number(seq))[0]!;
        if (items.kind === "data") for (let i = 0; i < items.items.length; i++) lastSeqOfKey.set(i, Number(seq));
        lastSeq = Number(seq);
      } else if (kind === "k") {
        acked.add(Number(id));
      } else if (kind === "i") {
        ackStarted.add(Number(id));
      } else {
        throw new Error(`unexpected child output: ${line}`);
      }
    }
    expect(ids.length).toBeGreaterThan(10);
    // Ids keep increasing across kills and restarts.
    expect(ids[0]).toBeGreaterThan(lastId);
    for (let i = 1; i < ids.length; i++) expect(ids[i]).toBeGreaterThan(ids[i - 1]!);
    lastId = ids.at(-1)!;

    // An independent connection sees a sound file (it also recovers the WAL).
    const raw = new DatabaseSync(path);
    expect(raw.prepare("PRAGMA integrity_check").all()).toEqual([{ integrity_check: "ok" }]);
    raw.close();
    // Encrypted, nothing of the values is readable in the file or its WAL, also after a kill.
    if (keyHex) for (const f of [path, `${path}-wal`]) if (existsSync(f)) expect(readFileSync(f).includes("press-01"), f).toBe(false);

    const buffer = DurableBuffer.open({ path, maxBytes: 1 << 30, logger: silentLogger(), ...encryption });
    try {
      const stored = new Map(buffer.next(1_000_000).map((b) => [b.id, b]));
      for (const [id, seq] of appended) {
        if (acked.has(id)) {
          expect(stored.has(id), `acked batch ${id} is still stored`).toBe(false);
          continue;
        }
        const batch = stored.get(id);
        // Killed inside ack(): gone or intact, never damaged.
        if (ackStarted.has(id) && batch === undefined) {
          acked.add(id);
          continue;
        }
        expect(batch, `batch ${id} (seq ${seq}) was reported appended but is missing`).toBeDefined();
        expect(batch!.messages).toEqual(loopBatch(seq));
      }
      // Batches appended but not yet reported before the kill are intact too.
      for (const batch of stored.values()) expect(batch.messages).toEqual(loopBatch(seqOf(batch.messages)));
      // What was delivered per key: the last batch reported, or the one the kill cut off before its report.
      const delivered = buffer.lastDelivered("press-01", new Set(Array.from({ length: 70 }, (_, i) => `load.c${String(i).padStart(5, "0")}`)));
      for (const [i, seq] of lastSeqOfKey) {
        const v = Number(delivered.get(`load.c${String(i).padStart(5, "0")}`)?.v);
        expect(Math.floor(v / 1000), `key ${i}`).toBeGreaterThanOrEqual(seq);
        expect(Math.floor(v / 1000), `key ${i}`).toBeLessThanOrEqual(lastSeq + 1);
      }
      const s = buffer.stats();
      expect(s.appendedItems).toBe(s.ackedItems + s.droppedItems + s.items);
      expect(s.droppedItems).toBe(0);
      expect(s.batches).toBe(stored.size);
      lastId = Math.max(lastId, ...stored.keys());
    } finally {
      buffer.close();
    }
  }
}
