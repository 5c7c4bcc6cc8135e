/**
 * TUF attacks on freshness (security-tests.md, "Signed updates": expiry and freeze, rollback,
 * clock). Time moves with vi.useFakeTimers({ toFake: ["Date"] }): tuf-js takes its reference
 * time from `new Date()` once per refresh, and the repository signs with an explicit `now`.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import type { Timestamp } from "@tufjs/models";
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from "vitest";
import { expiry, loadRepo, metadataDir, metaFile, removeTarget, renewTimestamp, rotateKeys, signingKeys, writeMetadata } from "../../src/release/repo.ts";
import { expectRefused, forge, make, newRelease, openChannel, publish, readMeta, serveInstead, trustedVersion, type Channel, type Env } from "./tuf-helpers.ts";

let ch: Channel;
beforeAll(async () => {
  ch = await openChannel();
});
afterAll(() => ch.close());
afterEach(() => {
  vi.useRealTimers();
});

const DAY = 86_400_000;
const T = { timeout: 30_000 };

async function trusting(): Promise<Env> {
  const env = ch.fresh();
  expect(await env.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
  return env;
}

/** The device clock `days` from now (negative: behind). */
function clockAt(days: number): Date {
  const at = new Date(Date.now() + days * DAY);
  vi.useFakeTimers({ toFake: ["Date"] });
  vi.setSystemTime(at);
  return at;
}

describe("expiry and freeze", () => {
  it.each([
    ["root", 400, /Final root\.json is expired/, []],
    ["timestamp", 2, /Final timestamp\.json is expired/, []],
    ["snapshot", 8, /snapshot\.json is expired/, ["timestamp"]],
    ["targets", 91, /targets\.json is expired/, ["timestamp", "snapshot"]],
  ] as const)("refuses an expired %s (the roles it signs are fresh)", T, async (role, days, reason, mayAdvance) => {
    const env = await trusting();
    const now = new Date(Date.now() + days * DAY);
    // The repository signs everything below `role` anew at `now`; `role` itself stays as it was.
    if (role === "root") forge(env, { now, targets: newRelease });
    if (role === "snapshot") {
      // Only a new timestamp (renewTimestamp would sign a new snapshot too, as a repository should).
      const repo = loadRepo(env.repoDir);
      const signed = { ...repo.timestamp.signed.toJSON(), version: repo.timestamp.signed.version + 1, expires: expiry({ now }, "timestamp") };
      writeMetadata(env.repoDir, "timestamp", make<Timestamp>("timestamp", signed, signingKeys(env.keysDir, repo.root, "timestamp")));
    }
    if (role === "targets") forge(env, { now });
    clockAt(days);
    await expectRefused(env, reason, { mayAdvance: [...mayAdvance] });
  });

  it("follows fresh remote metadata when every local copy has expired (offline for a month)", T, async () => {
    const env = await trusting();
    publish(env.o(new Date(Date.now() + 30 * DAY)), "1.2.0");
    clockAt(30);
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available", release: { version: "1.2.0" } });
    expect(trustedVersion(env, "timestamp")).toBe(3);
  });

  it("follows a fresh root after its own trusted root expired (offline for more than a year)", T, async () => {
    const env = await trusting();
    const later = new Date(Date.now() + 400 * DAY);
    rotateKeys({ ...env.o(later), role: "root" });
    publish(env.o(later), "1.2.0");
    clockAt(400);
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available", release: { version: "1.2.0" } });
    expect(trustedVersion(env, "root")).toBe(2);
  });

  it("stays valid for connectors on daily timestamp renewal alone (100 days without a release)", { timeout: 60_000 }, async () => {
    const env = await trusting();
    for (let day = 1; day <= 100; day++) {
      renewTimestamp(env.o(new Date(Date.now() + day * DAY)));
      if (day % 10 === 0) {
        clockAt(day + 0.5);
        expect({ day, result: await env.check("1.1.0") }).toMatchObject({ day, result: { outcome: "up-to-date" } });
        vi.useRealTimers();
      }
    }
    expect(trustedVersion(env, "targets")).toBeGreaterThan(2);
  });

  it("sees nothing new behind a frozen (replayed, still valid) timestamp, and refuses it once it expires", T, async () => {
    const env = await trusting();
    const frozen = readMeta(env, "timestamp.json");
    publish(env.o(), "1.2.0");
    serveInstead(ch.cloud, "timestamp.json", frozen);
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
    clockAt(2);
    await expectRefused(env, /Final timestamp\.json is expired/, { running: "1.1.0" });
  });

  it("refuses a replayed older timestamp that is still valid", T, async () => {
    const env = await trusting();
    const old = readMeta(env, "timestamp.json");
    publish(env.o(), "1.2.0");
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available" });
    serveInstead(ch.cloud, "timestamp.json", old);
    await expectRefused(env, /New timestamp version 2 is less than current version 3/, { running: "1.1.0" });
  });
});

describe("rollback", () => {
  it("refuses a timestamp naming an older snapshot version", T, async () => {
    const env = await trusting();
    forge(env, { timestamp: (t) => (t.meta["snapshot.json"] = metaFile(1, readMeta(env, "1.snapshot.json")).toJSON()) });
    await expectRefused(env, /New snapshot version 1 is less than current version 2/);
  });

  it("refuses a snapshot naming an older targets version", T, async () => {
    const env = await trusting();
    forge(env, { snapshot: (s) => (s.meta["targets.json"] = metaFile(1, readMeta(env, "1.targets.json")).toJSON()) });
    await expectRefused(env, /New version 1 of targets\.json is less than current version 2/, { mayAdvance: ["timestamp"] });
  });

  it("refuses a snapshot from which the targets role was removed", T, async () => {
    const env = await trusting();
    forge(env, { snapshot: (s) => (s.meta = {}) });
    await expectRefused(env, /Missing file targets\.json in new snapshot/, { mayAdvance: ["timestamp"] });
  });

  it("recovers from a timestamp fast-forwarded with a stolen key once the timestamp key is rotated", T, async () => {
    const env = await trusting();
    const repo = loadRepo(env.repoDir);
    const stolen = make("timestamp", { ...repo.timestamp.signed.toJSON(), version: 1000 }, signingKeys(env.keysDir, repo.root, "timestamp"));
    serveInstead(ch.cloud, "timestamp.json", Buffer.from(JSON.stringify(stolen.toJSON())));
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
    expect(trustedVersion(env, "timestamp")).toBe(1000);
    delete ch.cloud.faults.tuf;
    // The real repository goes on: it is stuck behind version 1000 ...
    publish(env.o(), "1.2.0");
    await expectRefused(env, /New timestamp version 3 is less than current version 1000/, { running: "1.1.0" });
    // ... until the timestamp key is rotated.
    rotateKeys({ ...env.o(), role: "timestamp" });
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available", release: { version: "1.2.0" } });
    expect(trustedVersion(env, "timestamp")).toBe(4);
    expect(trustedVersion(env, "root")).toBe(2);
  });

  it("recovers from a snapshot fast-forwarded with stolen keys once the snapshot key is rotated (TUF 5.3.11)", T, async () => {
    const env = await trusting();
    const repo = loadRepo(env.repoDir);
    const keys = (role: "snapshot" | "timestamp") => signingKeys(env.keysDir, repo.root, role);
    const snapshot = make("snapshot", { ...repo.snapshot.signed.toJSON(), version: 1000 }, keys("snapshot"));
    const snapshotBytes = Buffer.from(JSON.stringify(snapshot.toJSON()));
    writeFileSync(path.join(metadataDir(env.repoDir), "1000.snapshot.json"), snapshotBytes);
    const timestamp = make("timestamp", { ...repo.timestamp.signed.toJSON(), version: 1000, meta: { "snapshot.json": metaFile(1000, snapshotBytes).toJSON() } }, keys("timestamp"));
    serveInstead(ch.cloud, "timestamp.json", Buffer.from(JSON.stringify(timestamp.toJSON())));
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
    expect(trustedVersion(env, "snapshot")).toBe(1000);
    delete ch.cloud.faults.tuf;
    rotateKeys({ ...env.o(), role: "snapshot" });
    publish(env.o(), "1.2.0");
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available", release: { version: "1.2.0" } });
    expect(trustedVersion(env, "snapshot")).toBeLessThan(1000);
  });

  it("refuses an old release, signed by the real keys, below the signed minimum, and a downgrade", T, async () => {
    const env = await trusting();
    publish(env.o(), "1.3.0", "1.2.0");
    expect(await env.check("1.0.0")).toMatchObject({ outcome: "available", minimum: "1.2.0" });
    // 1.3.0 is withdrawn; 1.1.0 is still validly signed but below the minimum the connector has seen.
    removeTarget(env.o(), "kerf-app-1.3.0.tar.gz");
    await expectRefused(env, /below the signed minimum: the newest release 1\.1\.0 is below the signed minimum version 1\.2\.0/, { mayAdvance: ["timestamp", "snapshot", "targets"] });
    await expectRefused(await trusting(), /downgrade: the newest release 1\.1\.0 is below the running version 1\.2\.0/, { running: "1.2.0" });
  });
});

describe("clock", () => {
  it("refuses while the clock is far ahead (everything looks expired) and follows again once it is right", T, async () => {
    const env = await trusting();
    publish(env.o(), "1.2.0");
    clockAt(10 * 365);
    await expectRefused(env, /is expired/, { running: "1.1.0" });
    vi.useRealTimers();
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available" });
  });

  it("refuses while the clock is far behind the last verified check (expiry would protect nothing) and follows again once it is right", T, async () => {
    const env = await trusting();
    publish(env.o(), "1.2.0");
    clockAt(-5 * 365);
    await expectRefused(env, /the clock is wrong: it says \d{4}-.* more than a day before the last verified update check/, { running: "1.1.0" });
    vi.useRealTimers();
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available" });
  });
});
