import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { afterEach, beforeEach, expect, it } from "vitest";
import { isKerfError } from "../../src/errors.ts";
import { ReplayStore } from "../../src/commands/replay.ts";

let dir: string;
let file: string;
let now: number;
const open = () => ReplayStore.open(file, { clockSkewSeconds: 30, now: () => now * 1000 });

beforeEach(() => {
  dir = mkdtempSync(path.join(tmpdir(), "kerf-replay-"));
  file = path.join(dir, "commands", "replay.db");
  now = 1_800_000_000;
});
afterEach(() => rmSync(dir, { recursive: true, force: true }));

it("takes a command id once, refuses it again, also after the store is closed and reopened", () => {
  const store = open();
  expect(store.claim("c-1", now + 60)).toBe(true);
  expect(store.claim("c-1", now + 60)).toBe(false);
  expect(store.claim("c-2", now + 60)).toBe(true);
  store.close();
  const again = open();
  expect(again.claim("c-1", now + 60)).toBe(false);
  expect(again.claim("c-2", now + 60)).toBe(false);
  expect(again.claim("c-3", now + 60)).toBe(true);
  again.close();
});

it("keeps an id until its envelope's exp plus the skew has passed, then prunes it", () => {
  const store = open();
  store.claim("short", now + 10);
  store.claim("long", now + 300);
  now += 40; // exp + skew of "short" is now + 40: not yet past
  expect(store.prune()).toBe(0);
  expect(store.claim("short", now)).toBe(false);
  now += 1;
  expect(store.prune()).toBe(1);
  expect(store.size).toBe(1);
  expect(store.claim("long", now + 300)).toBe(false);
  now += 300;
  store.claim("new", now + 60); // a claim prunes too
  expect(store.size).toBe(1);
  store.close();
});

it("refuses an SQLite file of another program instead of writing into it", () => {
  const other = path.join(dir, "other.db");
  const db = new DatabaseSync(other);
  db.exec("CREATE TABLE t (x)");
  db.close();
  let err: unknown;
  try {
    ReplayStore.open(other).close();
  } catch (e) {
    err = e;
  }
  expect(isKerfError(err, "COMMAND_STORE"), String(err)).toBe(true);
  expect((err as Error).message).toMatch(/another program/);
});
