/**
 * TUF attacks on keys and thresholds (security-tests.md, "Signed updates"): a repository whose
 * root and timestamp roles have 3 keys with threshold 2, served by one devcloud for the file.
 */
import { createHash } from "node:crypto";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { generateKey, signWith, type SigningKey } from "../../src/release/keys.ts";
import { loadRepo, metadataDir, nextRoot, rotateKeys, signingKeys } from "../../src/release/repo.ts";
import { expectRefused, forge, newRelease, openChannel, trustedVersion, type Channel, type Env } from "./tuf-helpers.ts";

let ch: Channel;
beforeAll(async () => {
  ch = await openChannel({ keysPerRole: { root: 3, timestamp: 3 }, thresholds: { root: 2, timestamp: 2 } });
});
afterAll(() => ch.close());

const T = { timeout: 30_000 };

async function trusting(): Promise<Env> {
  const env = ch.fresh();
  expect(await env.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
  return env;
}

const keysOf = (env: Env, role: "root" | "timestamp") => signingKeys(env.keysDir, loadRepo(env.repoDir).root, role);

/** Rewrites the served timestamp.json's signatures. */
function editTimestampSignatures(env: Env, edit: (sigs: { keyid: string; sig: string }[]) => { keyid: string; sig: string }[]): void {
  const file = path.join(metadataDir(env.repoDir), "timestamp.json");
  const json = JSON.parse(readFileSync(file, "utf8"));
  json.signatures = edit(json.signatures);
  writeFileSync(file, JSON.stringify(json));
}

const corrupt = (sig: string) => (sig[0] === "0" ? "1" : "0") + sig.slice(1);

describe("keys and thresholds", () => {
  it("refuses metadata signed by fewer keys than the threshold", T, async () => {
    const env = await trusting();
    forge(env, { targets: newRelease, timestampKeys: keysOf(env, "timestamp").slice(0, 1) });
    await expectRefused(env, /timestamp was signed by 1\/2 keys/, { running: "1.1.0" });
  });

  it("counts a signature repeated under the same key id once", T, async () => {
    const env = await trusting();
    forge(env, { targets: newRelease, timestampKeys: keysOf(env, "timestamp").slice(0, 1) });
    editTimestampSignatures(env, (sigs) => [sigs[0]!, { ...sigs[0]! }]);
    await expectRefused(env, /multiple signatures found for keyid/, { running: "1.1.0" });
  });

  it("refuses a root that lists one key under two key ids (it would count twice) before trusting it", T, async () => {
    const env = await trusting();
    const repo = loadRepo(env.repoDir);
    const [k0] = keysOf(env, "timestamp");
    const alias = createHash("sha256").update("alias of the first timestamp key").digest("hex");
    // Root version 2, properly signed by the root keys, names k0 twice for the timestamp role.
    const root2 = nextRoot({}, repo.root, (json) => {
      json.keys[alias] = k0!.key.toJSON();
      json.roles.timestamp = { keyids: [k0!.key.keyID, alias], threshold: 2 };
    });
    signWith(root2, keysOf(env, "root"));
    writeFileSync(path.join(metadataDir(env.repoDir), "2.root.json"), JSON.stringify(root2.toJSON()));
    forge(env, { targets: newRelease, timestampKeys: [k0!] });
    editTimestampSignatures(env, (sigs) => [sigs[0]!, { keyid: alias, sig: sigs[0]!.sig }]);
    await expectRefused(env, /2\.root\.json: root version 2 names one key under several key ids \(timestamp: [0-9a-f]+ and [0-9a-f]+\)/, { running: "1.1.0" });
    expect(trustedVersion(env, "root")).toBe(1);
  });

  it("accepts a threshold met despite one invalid signature, and refuses one that the invalid signature leaves unmet", T, async () => {
    let env = await trusting();
    forge(env, { targets: newRelease });
    editTimestampSignatures(env, (sigs) => sigs.map((s, i) => (i === 2 ? { ...s, sig: corrupt(s.sig) } : s)));
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available", release: { version: "1.2.0" } });

    env = await trusting();
    const [k0, , k2] = keysOf(env, "timestamp");
    forge(env, { targets: newRelease, timestampKeys: [k0!, k2!] });
    editTimestampSignatures(env, (sigs) => sigs.map((s) => (s.keyid === k2!.key.keyID ? { ...s, sig: corrupt(s.sig) } : s)));
    await expectRefused(env, /timestamp was signed by 1\/2 keys/, { running: "1.1.0" });
  });
});

describe("root rotation", () => {
  /** Root version 2 with three new root keys (threshold 2), signed by `signers(old, fresh)`. */
  function rotatedRoot(env: Env, signers: (old: SigningKey[], fresh: SigningKey[]) => SigningKey[]): void {
    const repo = loadRepo(env.repoDir);
    const fresh = [1, 2, 3].map(() => generateKey(path.join(env.dir, "new-keys"), "root"));
    const root2 = nextRoot({}, repo.root, (json) => {
      for (const id of json.roles.root!.keyids) delete json.keys[id];
      for (const k of fresh) json.keys[k.key.keyID] = k.key.toJSON();
      json.roles.root = { keyids: fresh.map((k) => k.key.keyID), threshold: 2 };
    });
    signWith(root2, signers(keysOf(env, "root"), fresh));
    writeFileSync(path.join(metadataDir(env.repoDir), "2.root.json"), JSON.stringify(root2.toJSON()));
  }

  it.each([
    ["only the old keys", (old: SigningKey[]) => old, /root was signed by 0\/2 keys/],
    ["only the new keys", (_old: SigningKey[], fresh: SigningKey[]) => fresh, /root was signed by 0\/2 keys/],
    ["one old key and the new keys", (old: SigningKey[], fresh: SigningKey[]) => [old[0]!, ...fresh], /root was signed by 1\/2 keys/],
    ["the old keys and one new key", (old: SigningKey[], fresh: SigningKey[]) => [...old, fresh[0]!], /root was signed by 1\/2 keys/],
  ] as const)("refuses a new root signed by %s", T, async (_name, signers, reason) => {
    const env = await trusting();
    rotatedRoot(env, signers);
    await expectRefused(env, reason, { running: "1.1.0" });
  });

  it("follows a proper root rotation (old and new thresholds met) and verifies with the new keys", T, async () => {
    const env = await trusting();
    rotatedRoot(env, (old, fresh) => [...old.slice(0, 2), ...fresh.slice(1)]);
    forge(env, { targets: newRelease });
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "available", release: { version: "1.2.0" } });
    expect(trustedVersion(env, "root")).toBe(2);
  });

  it("follows root rotations made by the tooling, one root version after another", T, async () => {
    const env = await trusting();
    rotateKeys({ ...env.o(), role: "root" });
    rotateKeys({ ...env.o(), role: "root", count: 1, threshold: 1 });
    rotateKeys({ ...env.o(), role: "targets" });
    expect(await env.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
    expect(trustedVersion(env, "root")).toBe(4);
  });
});
