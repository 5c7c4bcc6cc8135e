/**
 * The buffer knows the last data item it took per (machine, key) across restarts, so that a
 * restarted session can tell a repeated value from a new one.
 */
import { describe, expect, it } from "vitest";
import { spawn } from "node:child_process";
import { once } from "node:events";
import { DatabaseSync } from "node:sqlite";
import { fileURLToPath } from "node:url";
import type { Item, Message } from "../../src/message.ts";
import { bufferPerTest, captureLogger } from "./helpers.ts";

const t = bufferPerTest("buffer.db", { maxBytes: 100_000_000 });
const openBuffer = t.open;
const path = t.path;

const KEYS = new Set(["a", "b", "c"]);
const ackAndWait = fileURLToPath(new URL("./fixtures/ack-and-wait.ts", import.meta.url));

/** Runs the child until its acks are done, then SIGKILLs it: no close, no snapshot. */
async function ackThenKill(...pairs: string[]): Promise<void> {
  const child = spawn(process.execPath, [ackAndWait, path(), ...pairs], { stdio: ["ignore", "pipe", "inherit"] });
  let out = "";
  child.stdout!.on("data", (d: Buffer) => {
    out += d.toString();
    if (out.includes("ready")) child.kill("SIGKILL");
  });
  const [, signal] = (await once(child, "exit")) as [number | null, string | null];
  expect(signal).toBe("SIGKILL");
}
const item = (key: string, v: unknown, t: string, extra: Partial<Item> = {}): Item => ({ key, v, q: 0, t, ...extra });
const data = (machine: string, ...items: Item[]): Message[] => [{ kind: "data", machine, items }];
const at = (s: number) => new Date(Date.UTC(2026, 10, 23, 12, 0, s)).toISOString();
const plain = (m: Map<string, Item>) => Object.fromEntries([...m].map(([k, i]) => [k, { v: i.v, q: i.q, t: i.t }]));

describe("last delivered item per key", () => {
  it.each([
    ["a snapshot on every change", 0],
    ["no snapshot yet", 60_000],
  ])("survives a restart, acknowledged or not, per machine, with the newest item per key (%s)", (_, snapshotIntervalMs) => {
    let b = openBuffer({ snapshotIntervalMs });
    const first = b.append(data("m1", item("a", 1, at(1)), item("b", { x: [1, "two"] }, at(1))));
    b.append(data("m2", item("a", "other machine", at(1))));
    b.append([...data("m1", item("a", 2, at(2))), { kind: "status", machine: "m1", state: "online", t: at(2) }]);
    b.ack(first);
    b.close();
    b = openBuffer({ snapshotIntervalMs });
    expect(plain(b.lastDelivered("m1", KEYS))).toEqual({ a: { v: 2, q: 0, t: at(2) }, b: { v: { x: [1, "two"] }, q: 0, t: at(1) } });
    expect(plain(b.lastDelivered("m2", KEYS))).toEqual({ a: { v: "other machine", q: 0, t: at(1) } });
    expect(b.lastDelivered("m3", KEYS).size).toBe(0);
  });

  it("knows acknowledged items after SIGKILL, before and after a snapshot covered them", async () => {
    await ackThenKill("a=1", "b=2");
    let b = openBuffer({ snapshotIntervalMs: 3_600_000 });
    expect(b.stats()).toMatchObject({ batches: 0, ackedItems: 2 });
    expect(plain(b.lastDelivered("m", KEYS))).toEqual({ a: { v: 1, q: 0, t: at(0) }, b: { v: 2, q: 0, t: at(0) } });
    // close writes the snapshot and deletes the acknowledged batches
    b.close();
    await ackThenKill("c=3", "a=4");
    b = openBuffer();
    const known = { a: { v: 4, q: 0, t: at(0) }, b: { v: 2, q: 0, t: at(0) }, c: { v: 3, q: 0, t: at(0) } };
    expect(plain(b.lastDelivered("m", KEYS))).toEqual(known);
    // Closed without a new append: its snapshot must still take in what the open read from the
    // acknowledged batches, before it deletes them.
    b.close();
    b = openBuffer();
    expect(plain(b.lastDelivered("m", KEYS))).toEqual(known);
  });

  it("leaves heartbeats out: they repeat a value under the connector's time", () => {
    let b = openBuffer();
    b.append(data("m", item("a", 5, at(1))));
    b.append(data("m", item("a", 5, at(9), { hb: true })));
    b.close();
    b = openBuffer();
    expect(plain(b.lastDelivered("m", KEYS))).toEqual({ a: { v: 5, q: 0, t: at(1) } });
  });

  it("forgets keys that are no longer mapped", () => {
    let b = openBuffer();
    b.append(data("m", item("a", 1, at(1)), item("gone", 1, at(1))));
    expect([...b.lastDelivered("m", KEYS).keys()]).toEqual(["a"]);
    b.close();
    b = openBuffer();
    expect([...b.lastDelivered("m", new Set(["a", "gone"])).keys()]).toEqual(["a"]);
  });

  it("a split batch (new ids, older items) does not take the place of a newer item", () => {
    let b = openBuffer({ snapshotIntervalMs: 60_000 });
    const old = b.append(data("m", item("a", 1, at(1)), item("b", 1, at(1))));
    b.append(data("m", item("a", 2, at(2))));
    b.replace(old, [data("m", item("a", 1, at(1))), data("m", item("b", 1, at(1)))]);
    b.close();
    b = openBuffer();
    expect(plain(b.lastDelivered("m", KEYS))).toEqual({ a: { v: 2, q: 0, t: at(2) }, b: { v: 1, q: 0, t: at(1) } });
  });

  it("acknowledged batches leave the queue at once, and the file with the snapshot that covers them", () => {
    const b = openBuffer({ snapshotIntervalMs: 60_000 });
    const ids = Array.from({ length: 40 }, (_, n) => b.append(data("m", item("a", n, at(n)))));
    for (const id of ids) b.ack(id);
    expect(b.next(100)).toEqual([]);
    expect(b.stats()).toMatchObject({ batches: 0, items: 0, ackedItems: 40 });
    b.close();
    const raw = new DatabaseSync(path(), { readOnly: true });
    expect((raw.prepare("SELECT count(*) AS n FROM batches").get() as { n: number }).n).toBe(0);
    raw.close();
    expect(plain(openBuffer().lastDelivered("m", KEYS))).toEqual({ a: { v: 39, q: 0, t: at(39) } });
  });

  it("a damaged snapshot is reported and only costs the knowledge, not the buffer", () => {
    let b = openBuffer({ snapshotIntervalMs: 0 });
    b.ack(b.append(data("m", item("a", 1, at(1)))));
    const pending = b.append(data("m", item("b", 2, at(2))));
    b.close();
    const db = new DatabaseSync(path());
    db.exec("UPDATE delivered SET payload = CAST('not json' AS BLOB), format = 0");
    db.close();
    const { logger, lines } = captureLogger();
    b = openBuffer({ logger });
    expect(lines.some((l) => /snapshot of delivered values is unreadable/.test(l.msg))).toBe(true);
    expect(b.next(10).map((x) => x.id)).toEqual([pending]);
    // What is still in the file is known; the acknowledged item went with the snapshot.
    expect(plain(b.lastDelivered("m", KEYS))).toEqual({ b: { v: 2, q: 0, t: at(2) } });
  });

  it("reads a version 1 file: its batches stay queued and count as delivered", () => {
    const db = new DatabaseSync(path());
    db.exec(`
      PRAGMA auto_vacuum = INCREMENTAL; PRAGMA journal_mode = WAL;
      CREATE TABLE meta (name TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;
      CREATE TABLE counters (name TEXT PRIMARY KEY, value INTEGER NOT NULL) STRICT;
      CREATE TABLE batches (id INTEGER PRIMARY KEY AUTOINCREMENT, created_at INTEGER NOT NULL, items INTEGER NOT NULL,
        bytes INTEGER NOT NULL, format INTEGER NOT NULL, payload BLOB NOT NULL) STRICT;
      CREATE INDEX batches_created_at ON batches (created_at);
      INSERT INTO meta VALUES ('epoch', 'v1-epoch');
      INSERT INTO counters VALUES ('appended_items', 1), ('acked_items', 0), ('dropped_buffer_full', 0), ('dropped_rejected', 0), ('dropped_too_large', 0);
      PRAGMA application_id = ${0x4b455246}; PRAGMA user_version = 1;`);
    const json = Buffer.from(JSON.stringify(data("m", item("a", 7, at(7)))));
    db.prepare("INSERT INTO batches (created_at, items, bytes, format, payload) VALUES (?, 1, ?, 0, ?)").run(Date.now(), json.length, json);
    db.close();
    const b = openBuffer();
    expect(b.epoch).toBe("v1-epoch");
    expect(b.next(10).map((x) => x.messages)).toEqual([data("m", item("a", 7, at(7)))]);
    expect(plain(b.lastDelivered("m", KEYS))).toEqual({ a: { v: 7, q: 0, t: at(7) } });
    expect(b.stats()).toMatchObject({ batches: 1, items: 1, appendedItems: 1 });
  });
});
