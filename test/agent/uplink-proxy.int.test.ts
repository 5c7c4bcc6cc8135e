/**
 * The uplink part takes its proxy from the loaded config, or else from HTTPS_PROXY, says in one
 * line which and why, and delivers through it: the real loader, part, buffer, proxy and devcloud.
 */
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { UplinkPart } from "../../src/agent/uplink-part.ts";
import { loadConfig } from "../../src/config/load.ts";
import { startDevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import { captureLogger } from "../buffer/helpers.ts";
import { GOOD_MAPPING } from "../config/helpers.ts";
import { startConnectProxy } from "../helpers/connect-proxy.ts";
import { waitFor } from "../helpers/env.ts";
import { clientIdentity, numberedItems, openBuffer, runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

const cleanup: Cleanups = [];
afterEach(() => runCleanups(cleanup));

/** The authorization server of the last run's devcloud. */
let cloudIssuer = "";

const envNames = ["HTTPS_PROXY", "https_proxy", "NO_PROXY", "no_proxy"] as const;

/** Sets the proxy variables of this test process for one test. */
function setEnv(values: Partial<Record<(typeof envNames)[number], string>>): void {
  const saved = envNames.map((n) => [n, process.env[n]] as const);
  for (const n of envNames) delete process.env[n];
  Object.assign(process.env, values);
  cleanup.push(() => {
    for (const [n, v] of saved) if (v === undefined) delete process.env[n];
    else process.env[n] = v;
  });
}

async function run(proxyYaml: string, files: Record<string, string> = {}) {
  const { dir, remove } = await tempDir("kerf-uplink-proxy-");
  cleanup.push(remove);
  const cloud = await startDevCloud({ dir: path.join(dir, "cloud"), logger: silentLogger() });
  cleanup.push(() => cloud.stop());
  cloudIssuer = cloud.auth.issuer;
  const identity = await clientIdentity(cloud.ca, "kerf-test");
  await writeFile(path.join(dir, "client.pem"), identity.certPem);
  await writeFile(path.join(dir, "client.key"), identity.keyPem, { mode: 0o600 });
  await writeFile(path.join(dir, "mapping.yaml"), GOOD_MAPPING);
  for (const [name, text] of Object.entries(files)) await writeFile(path.join(dir, name), text, { mode: 0o600 });
  await writeFile(
    path.join(dir, "kerf.yaml"),
    `instance: kerf-test
mapping: ./mapping.yaml
machines:
  - id: saw-1
    endpoint: opc.tcp://127.0.0.1:4840
cloud:
  url: ${cloud.url}
  pins: ["${cloud.pin}", "sha256/${Buffer.alloc(32, 7).toString("base64")}"]
  caFile: ${cloud.ca.certFile}
  identity: { certificateFile: client.pem, privateKeyFile: client.key }
  auth: { issuer: "${cloud.auth.issuer}" }
${proxyYaml}`,
  );
  const loaded = await loadConfig(path.join(dir, "kerf.yaml"));
  const buffer = openBuffer(dir, 64 * 1024 * 1024, cleanup);
  const capture = captureLogger("info");
  const part = new UplinkPart({ loaded, stateDir: dir, logger: capture.logger, store: buffer, backlog: () => buffer.stats().items });
  await part.start();
  cleanup.push(() => part.stop({ left: () => 5_000, drainMs: 0 }));
  buffer.append(numberedItems().batch(25));
  part.sender!.wake();
  await waitFor("the values in the cloud", () => cloud.store.counts().items === 25, 20_000, 20);
  const proxyLines = capture.lines.filter((l) => String(l.msg).startsWith("uplink connects"));
  return { proxyLines, lines: capture.lines };
}

describe("the uplink part's proxy", () => {
  it("cloud.proxy with Basic credentials from files wins over HTTPS_PROXY, and says so once without the credentials", async () => {
    const fromEnv = await startConnectProxy();
    cleanup.push(() => fromEnv.close());
    const fromConfig = await startConnectProxy({ username: "line-1", password: "pr0xy-secret" });
    cleanup.push(() => fromConfig.close());
    setEnv({ HTTPS_PROXY: fromEnv.url });
    const { proxyLines, lines } = await run(`  proxy: { url: "${fromConfig.url}", usernameFile: user, passwordFile: password }\n`, { user: "line-1\n", password: "pr0xy-secret\n" });
    expect(fromConfig.connects.length).toBeGreaterThan(0);
    expect(fromConfig.connects.every((c) => c.status === 200)).toBe(true);
    // the access token came through the tunnel too: a CONNECT to the authorization server's port
    expect(fromConfig.connects.map((c) => c.target)).toContain(new URL(cloudIssuer).host);
    expect(fromEnv.connects).toHaveLength(0);
    expect(proxyLines).toHaveLength(1);
    expect(proxyLines[0]).toMatchObject({ level: 30, proxy: fromConfig.url, proxySource: "config" });
    expect(proxyLines[0]!.msg).toContain(`through the HTTP CONNECT proxy ${fromConfig.url} with Basic authentication, from cloud.proxy in the config (it wins over HTTPS_PROXY in the environment)`);
    expect(JSON.stringify(lines)).not.toContain("pr0xy-secret");
  });

  it("without cloud.proxy: HTTPS_PROXY from the environment, and NO_PROXY sends the cloud direct", async () => {
    const fromEnv = await startConnectProxy();
    cleanup.push(() => fromEnv.close());
    setEnv({ https_proxy: fromEnv.url });
    const first = await run("");
    expect(fromEnv.connects.length).toBeGreaterThan(0);
    expect(first.proxyLines[0]).toMatchObject({ proxy: fromEnv.url, proxySource: "environment" });
    expect(first.proxyLines[0]!.msg).toContain("from HTTPS_PROXY in the environment");

    await runCleanups(cleanup);
    const again = await startConnectProxy();
    cleanup.push(() => again.close());
    setEnv({ HTTPS_PROXY: again.url, NO_PROXY: "example.test,127.0.0.1" });
    const second = await run("");
    expect(again.connects).toHaveLength(0);
    expect(second.proxyLines[0]!.msg).toContain("direct to hosts matching NO_PROXY=example.test,127.0.0.1");
  });

  it("without either: connects directly and says so", async () => {
    setEnv({});
    const { proxyLines } = await run("");
    expect(proxyLines).toEqual([expect.objectContaining({ proxy: null, msg: "uplink connects directly: no cloud.proxy in the config and no HTTPS_PROXY in the environment" })]);
  });
});
