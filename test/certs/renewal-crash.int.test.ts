/**
 * Crash during rekey: a real child process runs a renewal with a new key and SIGKILLs itself
 * right after each step in turn. After every crash the identity directory must hold one usable
 * identity that the devcloud accepts over mTLS, and a later renewal must complete.
 */
import { spawn } from "node:child_process";
import { X509Certificate } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { bootstrapIdentity } from "../../src/certs/enrol.ts";
import { loadIdentity, type Identity } from "../../src/certs/identity.ts";
import { RENEWAL_STEPS } from "../../src/certs/renewal.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/index.ts";
import { silentLogger } from "../../src/log.ts";
import { Transport } from "../../src/uplink/transport.ts";
import { postOnce } from "./ingest.ts";
import { runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

const fixture = path.join(import.meta.dirname, "fixtures", "renew-and-crash.ts");
const cleanups: Cleanups = [];
let dir: string;
let cloud: DevCloud;

beforeEach(async () => {
  const tmp = await tempDir("kerf-rekey-crash-");
  dir = tmp.dir;
  cleanups.push(tmp.remove);
  // a working identity is shown by a plain mutual-TLS ingest request, without an access token
  cloud = await startDevCloud({ dir: path.join(dir, "devcloud"), logger: silentLogger(), requireTokens: false });
  cleanups.push(() => cloud.stop());
});
afterEach(() => runCleanups(cleanups));

function runChild(idDir: string, crashAt: string): Promise<{ signal: NodeJS.Signals | null; code: number | null; out: string; err: string }> {
  const options = { dir: idDir, instance: "line-1", estUrl: cloud.est.url, ingestUrl: cloud.url, pin: cloud.pin, caPem: cloud.ca.certPem, crashAt };
  const child = spawn(process.execPath, [fixture, JSON.stringify(options)], { stdio: ["ignore", "pipe", "pipe"] });
  // a test that fails or times out must not leave its child renewing forever
  cleanups.push(() => {
    if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  });
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  return new Promise((resolve) => child.once("exit", (code, signal) => resolve({ code, signal, out, err })));
}

/** A POST to the ingest with this identity: the devcloud demands a client certificate from its CA. */
async function ingestWith(id: Identity): Promise<number> {
  const transport = new Transport({ certPem: id.certPem, keyPem: id.keyPem, pins: [cloud.pin], caPem: cloud.ca.certPem, logger: silentLogger(), connections: 1 });
  try {
    return await postOnce(transport, cloud.url, "line-1", 1);
  } finally {
    await transport.close();
  }
}

describe("SIGKILL during a rekeying renewal", () => {
  it.each(RENEWAL_STEPS)("right after step %s leaves a working identity", { timeout: 60_000 }, async (step) => {
    const idDir = path.join(dir, "identity");
    const token = path.join(dir, "token");
    writeFileSync(token, cloud.est.issueBootstrapToken("line-1"));
    const before = await bootstrapIdentity({ dir: idDir, instance: "line-1", url: cloud.est.url, tokenFile: token, keyType: "ec", pins: [cloud.pin], caPem: cloud.ca.certPem, logger: silentLogger() });

    const crashed = await runChild(idDir, step);
    expect(crashed.err).toBe("");
    expect(crashed.signal).toBe("SIGKILL");
    expect(crashed.out.trim().split("\n").at(-1)).toBe(`step ${step}`);
    expect(cloud.est.counts.reenrolled).toBe(step === "key-staged" ? 0 : 1);

    // "After restart": what a starting connector loads.
    const after = loadIdentity(idDir, "line-1", silentLogger());
    if (!("certPem" in after)) throw new Error(`no usable identity after a crash at ${step}: ${after.problem}`);
    expect(await ingestWith(after)).toBe(200);
    expect(cloud.clientCertificates.get(new X509Certificate(after.certPem).serialNumber)).toBeGreaterThanOrEqual(1);
    expect(after.instanceId).toBe(before.instanceId);
    // Before the promotion the old identity is kept; from the key's promotion on the new one is in service.
    const promoted = RENEWAL_STEPS.indexOf(step) >= RENEWAL_STEPS.indexOf("key-promoted");
    expect(after.keyPem === before.keyPem).toBe(!promoted);
    expect(existsSync(path.join(idDir, "next"))).toBe(false);

    // And the next renewal goes through from there.
    const again = await runChild(idDir, "none");
    expect(again.signal).toBeNull();
    expect(again.out).toMatch(/completed\n$/);
    const final = loadIdentity(idDir, "line-1", silentLogger());
    if (!("certPem" in final)) throw new Error(final.problem);
    expect(final.keyPem).not.toBe(after.keyPem);
    expect(await ingestWith(final)).toBe(200);
  });
});
