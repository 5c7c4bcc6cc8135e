/**
 * Key rotation as an operator does it: `kerf release init | pack | publish | rotate | timestamp`
 * as child processes, the repository served by devcloud, and connectors (one that trusted the
 * old root, one fresh from the image's root v1) following the new roots.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import path from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { startDevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import { checkForUpdate, updateDirs } from "../../src/update/client.ts";
import { clientTransport, runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";
import { kerf, ROOT } from "./helpers.ts";

const cleanup: Cleanups = [];
afterAll(() => runCleanups(cleanup));

async function release(args: string[]): Promise<string> {
  const r = await kerf(["release", ...args], { timeoutMs: 60_000 });
  expect(r.stderr, `kerf release ${args.join(" ")}`).toBe("");
  expect(r.code).toBe(0);
  return r.stdout;
}

describe("kerf release rotate", () => {
  it("rotates the root, targets and timestamp keys; connectors follow root after root and still verify", { timeout: 120_000 }, async () => {
    const { dir, remove } = await tempDir("kerf-rotate-");
    cleanup.push(remove);
    const repo = path.join(dir, "repo");
    const keys = path.join(dir, "keys");
    const R = ["--repo", repo, "--keys", keys];
    await release(["init", ...R]);
    const imageRoot = path.join(repo, "metadata", "1.root.json");
    const pack = async (version: string) => {
      const out = path.join(dir, `kerf-${version}.tar.gz`);
      await release(["pack", "--out", out, "--source", ROOT, "--version", version]);
      await release(["publish", ...R, "--bundle", out]);
    };
    await pack("1.1.0");

    const cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), requireTokens: false, tufDir: repo });
    cleanup.push(() => cloud.stop());
    const { transport } = await clientTransport(cloud.ca, [cloud.pin], cleanup);
    const check = (state: string, runningVersion: string) =>
      checkForUpdate({ stateDir: path.join(dir, state), trustedRoot: imageRoot, baseUrl: cloud.url, transport, runningVersion, logger: silentLogger() });
    const trustedRoot = (state: string) => JSON.parse(readFileSync(path.join(updateDirs(path.join(dir, state)).metadata, "root.json"), "utf8")).signed;
    expect(await check("old", "1.0.0")).toMatchObject({ outcome: "available", release: { version: "1.1.0" } });
    expect(trustedRoot("old").version).toBe(1);

    const rootKeyBefore = readdirSync(path.join(keys, "root"));
    expect(await release(["rotate", ...R, "--role", "root"])).toMatch(/rotated the root keys: root v2/);
    expect(readdirSync(path.join(keys, "retired"))).toEqual(rootKeyBefore);
    expect(await check("old", "1.1.0")).toMatchObject({ outcome: "up-to-date" });
    expect(trustedRoot("old").version).toBe(2);

    expect(await release(["rotate", ...R, "--role", "targets"])).toMatch(/root v3/);
    expect(await release(["rotate", ...R, "--role", "timestamp"])).toMatch(/root v4/);
    expect(await release(["timestamp", ...R])).toMatch(/timestamp v\d+, expires/);
    await pack("1.2.0");

    for (const state of ["old", "fresh"]) {
      expect(await check(state, "1.1.0")).toMatchObject({ outcome: "available", release: { version: "1.2.0" } });
      const root = trustedRoot(state);
      expect(root.version).toBe(4);
      // The connector now trusts exactly the keys in the keys dir, none of the retired ones.
      for (const role of ["root", "targets", "timestamp"]) {
        expect(root.roles[role].keyids.map((id: string) => `${id}.key`)).toEqual(readdirSync(path.join(keys, role)));
      }
    }
    expect(existsSync(path.join(keys, "retired"))).toBe(true);
  });
});
