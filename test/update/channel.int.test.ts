/**
 * The signed channel end to end: a repository made with the release tooling, served by devcloud
 * behind its pinned mTLS, checked by the tuf-js client over the connector's Transport.
 */
import { readdirSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { startDevCloud } from "../../src/devcloud/server.ts";
import { createLogger, silentLogger, type Logger } from "../../src/log.ts";
import { packBundle } from "../../src/release/bundle.ts";
import { publishBundle } from "../../src/release/publish.ts";
import { initRepo, loadRepo, metadataDir, removeTarget } from "../../src/release/repo.ts";
import { checkForUpdate, updateDirs } from "../../src/update/client.ts";
import { clientTransport, runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));
const source = path.resolve(import.meta.dirname, "../..");

async function setup() {
  const { dir, remove } = await tempDir("kerf-tuf-");
  cleanup.push(remove);
  const repoDir = path.join(dir, "repo");
  const keysDir = path.join(dir, "keys");
  initRepo({ repoDir, keysDir });
  const cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger(), requireTokens: false, tufDir: repoDir });
  cleanup.push(() => cloud.stop());
  const { transport } = await clientTransport(cloud.ca, [cloud.pin], cleanup);
  const publish = async (version: string, minVersion = "0.0.0") => {
    const bundle = path.join(dir, `b-${version}.tar.gz`);
    await packBundle({ sourceDir: source, out: bundle, version, minVersion });
    return publishBundle({ repoDir, keysDir, bundle });
  };
  const stateDir = path.join(dir, "state");
  const check = (runningVersion: string, logger: Logger = silentLogger()) =>
    checkForUpdate({ stateDir, trustedRoot: path.join(metadataDir(repoDir), "1.root.json"), baseUrl: cloud.url, transport, runningVersion, logger });
  return { dir, repoDir, keysDir, cloud, publish, check, stateDir };
}

describe("the signed update channel", () => {
  it("offers a newer signed release and downloads it with its hash checked", { timeout: 60_000 }, async () => {
    const s = await setup();
    await s.publish("1.1.0");
    const lines: Record<string, unknown>[] = [];
    const result = await s.check("1.0.0", createLogger({ level: "info", destination: { write: (l: string) => void lines.push(JSON.parse(l) as Record<string, unknown>) } }));
    expect(result.outcome).toBe("available");
    if (result.outcome !== "available") return;
    expect(result.release.version).toBe("1.1.0");
    expect(readFileSync(result.file).length).toBe(result.release.length);
    // the download's progress, counted from the bytes that came in; the metadata shows none
    const progress = lines.filter((l) => l.event === "progress");
    expect(progress).toEqual([expect.objectContaining({ operation: expect.stringMatching(/^update: downloading .*1\.1\.0/), outcome: "done", done: result.release.length, total: result.release.length })]);
    expect(await s.check("1.1.0")).toMatchObject({ outcome: "up-to-date" });
  });

  it("refuses a downgrade and a release below the signed minimum; nothing downloaded", { timeout: 60_000 }, async () => {
    const s = await setup();
    await s.publish("1.1.0");
    expect(await s.check("1.2.0")).toMatchObject({ outcome: "refused", reason: expect.stringMatching(/^downgrade/) });
    await s.publish("1.3.0", "1.2.0");
    expect(await s.check("1.0.0")).toMatchObject({ outcome: "available" });
    removeTarget({ repoDir: s.repoDir, keysDir: s.keysDir }, "kerf-app-1.3.0.tar.gz");
    expect(await s.check("1.0.0")).toMatchObject({ outcome: "refused", reason: expect.stringMatching(/below the signed minimum/) });
    expect(readdirSync(updateDirs(s.stateDir).download)).toEqual([]);
  });

  it("refuses tampered metadata and a substituted target", { timeout: 60_000 }, async () => {
    const s = await setup();
    await s.publish("1.1.0");
    const repo = loadRepo(s.repoDir);
    // Substituted target: same name and length on the server, other bytes.
    const target = readdirSync(path.join(s.repoDir, "targets"))[0]!;
    const file = path.join(s.repoDir, "targets", target);
    const bytes = readFileSync(file);
    bytes.writeUInt8(bytes.readUInt8(bytes.length - 1) ^ 0xff, bytes.length - 1);
    writeFileSync(file, bytes);
    expect(await s.check("1.0.0")).toMatchObject({ outcome: "refused", reason: expect.stringMatching(/hash/i) });
    expect(readdirSync(updateDirs(s.stateDir).download)).toEqual([]);
    // Unsigned timestamp: a higher version without any signature.
    const ts = JSON.parse(readFileSync(path.join(metadataDir(s.repoDir), "timestamp.json"), "utf8"));
    ts.signed.version = repo.timestamp.signed.version + 1;
    writeFileSync(path.join(metadataDir(s.repoDir), "timestamp.json"), JSON.stringify(ts));
    expect(await s.check("1.0.0")).toMatchObject({ outcome: "refused", reason: expect.stringMatching(/timestamp was signed by 0\/1 keys/) });
  });
});
