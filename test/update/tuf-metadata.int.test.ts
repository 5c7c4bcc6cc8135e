/**
 * TUF attacks on the metadata and the bundle (security-tests.md, "Signed updates": invalid,
 * unsigned or wrongly typed metadata; hash and length). One devcloud and one template
 * repository for the file; each test serves its own copy and forges with the release tooling.
 */
import { copyFileSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import type { ServerResponse } from "node:http";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { signWith } from "../../src/release/keys.ts";
import { updateDirs } from "../../src/update/client.ts";
import { metadataDir, metaFile, nextRoot, loadRepo, signingKeys } from "../../src/release/repo.ts";
import { trustedState, expectRefused, forge, make, newRelease, openChannel, publish, readMeta, serveInstead, strangerKey, type Channel, type Env } from "./tuf-helpers.ts";

let ch: Channel;
beforeAll(async () => {
  ch = await openChannel();
});
afterAll(() => ch.close());

/** A fresh copy whose state trusts the template (1.1.0 published) after one good check. */
async function trusting(): Promise<Env> {
  const env = ch.fresh();
  expect(await env.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
  return env;
}

const T = { timeout: 30_000 };

describe("invalid, unsigned or wrongly typed metadata", () => {
  it("refuses an invalid, unsigned, wrongly typed or foreign-signed initial root and trusts nothing from it", T, async () => {
    const env = ch.fresh();
    const real = JSON.parse(readMeta(env, "1.root.json").toString());
    const stranger = strangerKey(env);
    const foreign = make("root", real.signed, [stranger]);
    const cases: [string, string, RegExp][] = [
      ["garbage", "{not json", /not valid signed root metadata: .*JSON/],
      ["unsigned", JSON.stringify({ ...real, signatures: [] }), /root was signed by 0\/1 keys/],
      ["wrong type", readMeta(env, "timestamp.json").toString(), /its type is 'timestamp', expected 'root'/],
      ["foreign key", JSON.stringify(foreign.toJSON()), /root was signed by 0\/1 keys/],
    ];
    for (const [name, text, reason] of cases) {
      const file = path.join(env.dir, `${name}.root.json`);
      writeFileSync(file, text);
      const result = await env.check("1.0.0", file);
      expect({ name, result }).toMatchObject({ name, result: { outcome: "refused", reason: expect.stringMatching(reason) } });
      expect(trustedState(env).size).toBe(0);
    }
    // Nothing stuck: the real root works afterwards.
    expect(await env.check("1.0.0")).toMatchObject({ outcome: "available" });
  });

  it("refuses, without throwing, when the trusted root on disk is damaged", T, async () => {
    const env = await trusting();
    writeFileSync(path.join(updateDirs(env.stateDir).metadata, "root.json"), "{damaged");
    await expectRefused(env, /the trusted root .*state\/update\/metadata\/root\.json is damaged: SyntaxError/);
  });

  it.each([
    ["timestamp", "no key (unsigned)", []],
    ["snapshot", "no key (unsigned)", ["timestamp"]],
    ["targets", "no key (unsigned)", ["timestamp", "snapshot"]],
    ["timestamp", "a key the root does not name", []],
    ["snapshot", "a key the root does not name", ["timestamp"]],
    ["targets", "a key the root does not name", ["timestamp", "snapshot"]],
    ["timestamp", "the real key id but a wrong signature", []],
    ["snapshot", "the real key id but a wrong signature", ["timestamp"]],
    ["targets", "the real key id but a wrong signature", ["timestamp", "snapshot"]],
  ] as const)("refuses %s metadata signed with %s", T, async (role, how, mayAdvance) => {
    const env = await trusting();
    const real = signingKeys(env.keysDir, loadRepo(env.repoDir).root, role)[0]!;
    const signers = how.startsWith("no key") ? [] : how.startsWith("a key") ? [strangerKey(env)] : [{ ...real, privateKey: strangerKey(env).privateKey }];
    forge(env, { targets: newRelease, [`${role}Keys`]: signers });
    await expectRefused(env, new RegExp(`${role} was signed by 0/1 keys`), { mayAdvance: [...mayAdvance] });
  });

  it("refuses metadata whose version differs from the version in its URL", T, async () => {
    // root: 2.root.json holds a properly signed root version 3.
    let env = await trusting();
    const repo = loadRepo(env.repoDir);
    const root3 = nextRoot({}, repo.root, (json) => (json.version = 3));
    signWith(root3, signingKeys(env.keysDir, repo.root, "root"));
    writeFileSync(path.join(metadataDir(env.repoDir), "2.root.json"), JSON.stringify(root3.toJSON()));
    await expectRefused(env, /Expected version 2, got 3/);
    // snapshot: the timestamp names 3.snapshot.json, which holds a signed snapshot version 4.
    env = await trusting();
    forge(env, { snapshot: (s) => (s.version = 4), timestamp: (t) => (t.meta["snapshot.json"].version = 3) });
    copyFileSync(path.join(metadataDir(env.repoDir), "4.snapshot.json"), path.join(metadataDir(env.repoDir), "3.snapshot.json"));
    await expectRefused(env, /Snapshot version doesn't match timestamp/, { mayAdvance: ["timestamp"] });
    // targets: the snapshot names 3.targets.json, which holds a signed targets version 4.
    env = await trusting();
    forge(env, { targets: (s) => (s.version = 4), snapshot: (s) => (s.meta["targets.json"].version = 3) });
    copyFileSync(path.join(metadataDir(env.repoDir), "4.targets.json"), path.join(metadataDir(env.repoDir), "3.targets.json"));
    await expectRefused(env, /Version 4 of targets does not match snapshot version 3/, { mayAdvance: ["timestamp", "snapshot"] });
  });

  it("refuses metadata of the wrong type", T, async () => {
    let env = await trusting();
    // timestamp.json answered with the (validly signed) snapshot
    serveInstead(ch.cloud, "timestamp.json", readMeta(env, "snapshot.json"));
    await expectRefused(env, /expected 'timestamp', got snapshot/);
    // the snapshot named by a signed timestamp (hash and length right) is the targets metadata
    env = await trusting();
    const targetsBytes = readMeta(env, "targets.json");
    forge(env, { timestamp: (t) => (t.meta["snapshot.json"] = metaFile(3, targetsBytes).toJSON()) });
    writeFileSync(path.join(metadataDir(env.repoDir), "3.snapshot.json"), targetsBytes);
    await expectRefused(env, /expected 'snapshot', got targets/, { mayAdvance: ["timestamp"] });
  });
});

describe("hash and length", () => {
  const flipSig = (b: Buffer) => {
    const text = b.toString();
    const at = text.indexOf('"sig":"') + 8;
    return Buffer.from(text.slice(0, at) + (text[at] === "0" ? "1" : "0") + text.slice(at + 1));
  };
  const longer = (b: Buffer) => Buffer.concat([b, Buffer.from("    ")]);
  const shorter = (b: Buffer) => Buffer.from(JSON.stringify(JSON.parse(b.toString()).signed));

  it.each([
    ["snapshot", "hash", flipSig, /Expected hash [0-9a-f]+ but got/, ["timestamp"]],
    ["snapshot", "length (longer)", longer, /Max length reached/, ["timestamp"]],
    ["snapshot", "length (shorter)", shorter, /Expected length \d+ but got \d+/, ["timestamp"]],
    ["targets", "hash", flipSig, /Expected hash [0-9a-f]+ but got/, ["timestamp", "snapshot"]],
    ["targets", "length (longer)", longer, /Max length reached/, ["timestamp", "snapshot"]],
    ["targets", "length (shorter)", shorter, /Expected length \d+ but got \d+/, ["timestamp", "snapshot"]],
  ] as const)("refuses %s metadata whose %s does not match", T, async (role, _what, serve, reason, mayAdvance) => {
    const env = await trusting();
    forge(env, { targets: newRelease, [`${role}Served`]: serve });
    await expectRefused(env, reason, { mayAdvance: [...mayAdvance] });
  });

  it("refuses a bundle substituted on the server (same name and length, other bytes)", T, async () => {
    const env = await trusting();
    publish(env.o(), "1.2.0");
    const real = readFileSync(path.join(env.dir, "bundle-1.2.0.tar.gz"));
    const fake = Buffer.alloc(real.length, 0x41);
    ch.cloud.faults.tuf = (_req, res, file) => {
      if (file.kind !== "targets") return false;
      res.writeHead(200, { "content-length": fake.length });
      res.end(fake);
      return true;
    };
    await expectRefused(env, /target kerf-app-1\.2\.0\.tar\.gz: .*Expected hash [0-9a-f]+ but got/, { running: "1.1.0", mayAdvance: ["timestamp", "snapshot", "targets"] });
  });

  it.each([
    ["targets", "the bundle", /target kerf-app-1\.2\.0\.tar\.gz: .*Max length reached/, ["timestamp", "snapshot", "targets"]],
    ["metadata", "timestamp.json", /metadata: .*Max length reached/, []],
  ] as const)("stops reading endless data for %s (%s) and closes the connection", T, async (kind, _what, reason, mayAdvance) => {
    const env = await trusting();
    publish(env.o(), "1.2.0");
    let sent = 0;
    let closed!: () => void;
    const aborted = new Promise<void>((resolve) => (closed = resolve));
    ch.cloud.faults.tuf = (_req, res, file) => {
      if (file.kind !== kind || (kind === "metadata" && file.name !== "timestamp.json")) return false;
      endless(res, (n) => (sent += n), closed);
      return true;
    };
    await expectRefused(env, reason, { running: "1.1.0", mayAdvance: [...mayAdvance] });
    // The client aborted the answer instead of leaving it paused: the server sees the connection end.
    await aborted;
    expect(sent).toBeLessThan(64 * 1024 * 1024);
  });

  it.each([
    ["the bundle's hashes", /target kerf-app-1\.2\.0\.tar\.gz: .*Hash algorithm sha-999 not supported/, ["timestamp", "snapshot", "targets"]],
    ["the snapshot's hashes in the timestamp", /Hash algorithm sha-999 not supported/, ["timestamp"]],
  ] as const)("refuses an unknown hash algorithm in %s", T, async (where, reason, mayAdvance) => {
    const env = await trusting();
    if (where === "the bundle's hashes") {
      publish(env.o(), "1.2.0");
      forge(env, { targets: (s) => (s.targets["kerf-app-1.2.0.tar.gz"].hashes["sha-999"] = "00".repeat(32)) });
    } else {
      forge(env, { targets: newRelease, timestamp: (t) => (t.meta["snapshot.json"].hashes["sha-999"] = "00".repeat(32)) });
    }
    await expectRefused(env, reason, { running: "1.1.0", mayAdvance: [...mayAdvance] });
  });
});

describe("an unreachable repository is a failure to retry, not a refusal", () => {
  it.each([
    ["the snapshot answers 503", (name: string) => name === "3.snapshot.json", 503, /metadata: .*HTTP 503/, ["timestamp"]],
    ["the targets metadata connection is cut", (name: string) => name === "3.targets.json", 0, /metadata: .*(socket|closed|reset)/i, ["timestamp", "snapshot"]],
    ["the bundle answers 404", (name: string) => name.endsWith("kerf-app-1.2.0.tar.gz"), 404, /target kerf-app-1\.2\.0\.tar\.gz: .*HTTP 404/, ["timestamp", "snapshot", "targets"]],
  ] as const)("when %s", T, async (_what, match, status, reason, mayAdvance) => {
    const env = await trusting();
    publish(env.o(), "1.2.0");
    ch.cloud.faults.tuf = (_req, res, file) => {
      if (!match(file.name)) return false;
      if (status === 0) res.socket?.destroy();
      else res.writeHead(status).end();
      return true;
    };
    await expectRefused(env, reason, { outcome: "failed", running: "1.1.0", mayAdvance: [...mayAdvance] });
  });
});

describe("slow retrieval", () => {
  it("ends a check whose server drips its answer just fast enough for the idle timeout", T, async () => {
    const env = await trusting();
    let closed!: () => void;
    const aborted = new Promise<void>((resolve) => (closed = resolve));
    ch.cloud.faults.tuf = (_req, res, file) => {
      if (file.name !== "timestamp.json") return false;
      res.on("close", closed);
      res.writeHead(200, { "content-type": "application/json" });
      const timer = setInterval(() => res.write(" "), 50);
      res.on("close", () => clearInterval(timer));
      return true;
    };
    const before = trustedState(env);
    const result = await env.check("1.0.0", undefined, { checkTimeoutMs: 1_000 });
    expect(result).toMatchObject({ outcome: "failed", reason: expect.stringMatching(/metadata: .*(took longer than 1000 ms|aborted due to timeout)/) });
    expect(trustedState(env)).toEqual(before);
    await aborted;
  });
});

/** Writes 64 KiB chunks for as long as the client reads; `onClose` when the connection ends. */
function endless(res: ServerResponse, count: (n: number) => void, onClose: () => void): void {
  const chunk = Buffer.alloc(64 * 1024, 0x7b);
  res.on("close", onClose);
  res.writeHead(200, { "content-type": "application/octet-stream" });
  const pump = () => {
    while (!res.destroyed && res.write(chunk)) count(chunk.length);
    if (!res.destroyed) res.once("drain", pump);
  };
  pump();
}
