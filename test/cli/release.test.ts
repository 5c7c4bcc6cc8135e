/**
 * `kerf release` given bad input: a clear error that names the file, option or field, a non-zero
 * exit, and never a stack trace.
 */
import { mkdirSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { packBundle } from "../../src/release/bundle.ts";
import { publishBundle } from "../../src/release/publish.ts";
import { initRepo } from "../../src/release/repo.ts";
import { tempDir } from "../uplink/helpers.ts";
import { kerf, ROOT, type Result } from "./helpers.ts";

let dir: string;
let remove: () => Promise<void>;
const bundles: Record<string, string> = {};

beforeAll(async () => {
  ({ dir, remove } = await tempDir("kerf-release-cli-"));
  initRepo({ repoDir: path.join(dir, "repo"), keysDir: path.join(dir, "keys") });
  for (const [version, minVersion] of [["1.3.0", "1.2.0"], ["1.1.0", "0.0.0"], ["1.4.0", "1.2.0"]] as const) {
    bundles[version] = path.join(dir, `kerf-${version}.tar.gz`);
    await packBundle({ sourceDir: ROOT, out: bundles[version], version, minVersion });
  }
  await publishBundle({ repoDir: path.join(dir, "repo"), keysDir: path.join(dir, "keys"), bundle: bundles["1.3.0"]! });
}, 60_000);
afterAll(() => remove());

/** Runs the calls two at a time (each child loads the release modules). */
async function all(calls: string[][]): Promise<Result[]> {
  const results: Result[] = new Array(calls.length);
  let next = 0;
  const worker = async () => {
    for (let i = next++; i < calls.length; i = next++) results[i] = await kerf(calls[i]!);
  };
  await Promise.all([worker(), worker()]);
  return results;
}

describe("kerf release with bad input", () => {
  it("names the file, option or field that is wrong, without a stack trace", { timeout: 120_000 }, async () => {
    const repo = path.join(dir, "repo");
    const keys = path.join(dir, "keys");
    const notBundle = path.join(dir, "not-a-bundle.tar.gz");
    writeFileSync(notBundle, "hello");
    const out = path.join(dir, "out.tar.gz");
    const half = path.join(dir, "half");
    mkdirSync(half);
    writeFileSync(path.join(half, "package.json"), '{ "version": "1.0.0" }');
    const cases: [string[], RegExp][] = [
      [["publish", "--repo", repo, "--keys", path.join(dir, "no-keys"), "--bundle", bundles["1.4.0"]!], /no-keys: no such keys directory \(--keys\)/],
      [["publish", "--repo", repo, "--keys", path.join(dir, "repo"), "--bundle", bundles["1.4.0"]!], /targets: 0 of the 1 keys needed to sign are in .*repo\/targets/],
      [["publish", "--repo", path.join(dir, "no-repo"), "--keys", keys, "--bundle", bundles["1.4.0"]!], /no-repo\/metadata\/root\.json is missing: not a TUF repository/],
      [["publish", "--repo", repo, "--keys", keys, "--bundle", notBundle], /not-a-bundle\.tar\.gz: not a gzip tar/],
      [["publish", "--repo", repo, "--keys", keys, "--bundle", path.join(dir, "missing.tar.gz")], /missing\.tar\.gz: not a gzip tar: .*ENOENT/],
      [["publish", "--repo", repo, "--keys", keys, "--bundle", bundles["1.1.0"]!], /version 1\.1\.0 is below the signed minimum 1\.2\.0 of this repository/],
      [["publish", "--repo", repo, "--keys", keys, "--bundle", bundles["1.4.0"]!, "--pin", "sha256/short"], /invalid SPKI pin 'sha256\/short'/],
      [["pack", "--out", out, "--source", ROOT, "--version", "1.2"], /--version '1\.2' is not MAJOR\.MINOR\.PATCH/],
      [["pack", "--out", out, "--source", ROOT, "--version", "1.2.0", "--min-version", "v1"], /--min-version 'v1' is not MAJOR\.MINOR\.PATCH/],
      [["pack", "--out", out, "--source", ROOT, "--version", "1.0.0", "--min-version", "1.1.0"], /--min-version 1\.1\.0 is above the bundle's own version 1\.0\.0 \(--version\)/],
      [["pack", "--out", out, "--source", dir], /package\.json: cannot read it as JSON/],
      [["pack", "--out", out, "--source", half], /half is not a Kerf checkout: .*half\/package-lock\.json.* missing/],
      [["pack", "--out", path.join(dir, "no-dir", "x.tar.gz"), "--source", ROOT, "--version", "1.2.0"], /no-dir\/x\.tar\.gz: cannot write the bundle \(--out\)/],
      [["init", "--repo", repo, "--keys", path.join(dir, "keys2")], /repo holds a TUF repository already/],
      [["init", "--repo", path.join(dir, "repo2"), "--keys", keys], /keys\/root holds keys already/],
      [["withdraw", "--repo", repo, "--keys", keys, "--version", "9.9.9"], /no target 'kerf-app-9\.9\.9\.tar\.gz'/],
      [["rotate", "--repo", repo, "--keys", keys, "--role", "admin"], /--role must be one of root, targets, snapshot, timestamp, got 'admin'/],
      [["rotate", "--repo", repo, "--keys", keys, "--role", "timestamp", "--threshold", "2"], /timestamp: threshold 2 needs between 1 and 1 keys/],
      [["publish", "--repo", repo, "--bundle", bundles["1.4.0"]!], /release publish: --keys is required/],
    ];
    const results = await all(cases.map(([args]) => ["release", ...args]));
    cases.forEach(([args, pattern], i) => {
      const r = results[i]!;
      const what = `kerf release ${args.join(" ")}`;
      expect(r.code, what).not.toBe(0);
      expect(r.stderr, what).toMatch(pattern);
      expect(r.stderr, what).not.toMatch(/internal error|\n\s+at /);
    });
  });

  it("renews the timestamp and warns when the root expires within 60 days", { timeout: 60_000 }, async () => {
    const repo = path.join(dir, "short-root");
    const keys = path.join(dir, "short-root-keys");
    initRepo({ repoDir: repo, keysDir: keys, lifetimeDays: { root: 30 } });
    const r = await kerf(["release", "timestamp", "--repo", repo, "--keys", keys]);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^timestamp v2, expires \S+; snapshot v1, expires \S+; targets v1, expires \S+\n$/);
    expect(r.stderr).toMatch(/^kerf: warning: root v1 expires \S+: sign a new root before \(kerf release rotate --role root\)\n$/);
  });

  it("refuses to publish a version again with other content", { timeout: 60_000 }, async () => {
    const other = path.join(dir, "other-1.3.0.tar.gz");
    await packBundle({ sourceDir: ROOT, out: other, version: "1.3.0", minVersion: "1.2.0", now: new Date(0) });
    const r = await kerf(["release", "publish", "--repo", path.join(dir, "repo"), "--keys", path.join(dir, "keys"), "--bundle", other]);
    expect(r.code).toBe(1);
    expect(r.stderr).toMatch(/kerf-app-1\.3\.0\.tar\.gz is published already with other content/);
    // The same bytes again are no change of content: allowed.
    const same = await kerf(["release", "publish", "--repo", path.join(dir, "repo"), "--keys", path.join(dir, "keys"), "--bundle", bundles["1.3.0"]!]);
    expect(same.stderr).toBe("");
    expect(same.code).toBe(0);
  });
});
