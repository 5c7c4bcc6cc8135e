import { spawn, type ChildProcess } from "node:child_process";
import { X509Certificate } from "node:crypto";
import fs from "node:fs/promises";
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { AttributeIds, MessageSecurityMode, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import { run } from "../../src/cli/simulate.ts";
import { isKerfError } from "../../src/errors.ts";
import { SIM_NODES } from "../../src/simulator/nodes.ts";
import { tempDir } from "./helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
let child: ChildProcess | undefined;

beforeEach(async () => {
  ({ dir, cleanup } = await tempDir("kerf-sim-cli-"));
});
afterEach(async () => {
  if (child && child.exitCode === null && child.signalCode === null) {
    child.kill("SIGKILL");
    await new Promise((resolve) => child!.once("exit", resolve));
  }
  child = undefined;
  await cleanup();
});

/** Resolves with the key/value lines the command prints once it listens. */
function waitForBanner(proc: ChildProcess): Promise<Record<string, string>> {
  return new Promise((resolve, reject) => {
    let out = "";
    const timer = setTimeout(() => reject(new Error(`no banner in 20 s:\n${out}`)), 20_000);
    proc.stdout!.on("data", (chunk: Buffer) => {
      out += chunk.toString();
      if (/started in \d+ ms/.test(out)) {
        clearTimeout(timer);
        const lines = out.split("\n").filter((l) => /^[a-z ]+ {2}\S/.test(l) && !l.startsWith("{"));
        resolve(Object.fromEntries(lines.map((l) => [l.slice(0, 13).trim(), l.slice(13).trim()])));
      }
    });
    proc.once("exit", (code) => reject(new Error(`exited with ${code} before listening:\n${out}`)));
  });
}

describe("kerf simulate", () => {
  it("prints endpoint and certificate, serves the machine, and exits 0 on SIGTERM", async () => {
    child = spawn(process.execPath, ["src/main.ts", "simulate", "--port", "0", "--state-dir", dir], {
      cwd: path.resolve(import.meta.dirname, "../.."),
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, KERF_LOG_LEVEL: "warn" },
    });
    const banner = await waitForBanner(child);
    expect(banner.endpoint).toMatch(/^opc\.tcp:\/\/127\.0\.0\.1:\d+$/);
    expect(banner.certificate).toBe(path.join(dir, "simulator-pki", "own", "certs", "certificate.pem"));
    const cert = new X509Certificate(await fs.readFile(banner.certificate!));
    expect(banner.thumbprint).toBe(`${cert.fingerprint.replaceAll(":", "").toLowerCase()} (SHA-1)`);

    // SecurityMode None needs no trust on either side: enough to see the machine is served
    const client = OPCUAClient.create({
      securityMode: MessageSecurityMode.None,
      securityPolicy: SecurityPolicy.None,
      endpointMustExist: false,
      connectionStrategy: { maxRetry: 0 },
    });
    await client.connect(banner.endpoint!);
    try {
      const session = await client.createSession();
      const namespaces = await session.readNamespaceArray();
      const nodeId = SIM_NODES.serialNumber.replace("nsu=urn:kerf:simulator;", `ns=${namespaces.indexOf("urn:kerf:simulator")};`);
      const serial = await session.read({ nodeId, attributeId: AttributeIds.Value });
      expect(serial.value.value).toBe("KS-4200-000815");
      await session.close();
    } finally {
      await client.disconnect();
    }

    const exited = new Promise<number | null>((resolve) => child!.once("exit", (code) => resolve(code)));
    child.kill("SIGTERM");
    expect(await exited).toBe(0);
  });

  it("refuses bad arguments with a usage error before starting anything", async () => {
    const cases: [string[], RegExp][] = [
      [["--period", "100"], /--period needs --load/],
      [["--user", "op"], /--user and --password-file go together/],
      [["--port", "http"], /--port must be a whole number/],
      [["--port", "70000"], /--port must be 0\.\.65535/],
      [["--bogus"], /simulate: unknown option '--bogus'/],
      [["extra"], /unexpected argument 'extra'/],
      [["--load", "0", "--state-dir", dir], /load count must be a whole number in 1\.\.100000, got 0/],
      [["--max-notifications-per-publish", "0"], /--max-notifications-per-publish must be ≥ 1, got 0/],
    ];
    for (const [argv, message] of cases) {
      const err = await run(argv).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(isKerfError(err, "USAGE"), argv.join(" ")).toBe(true);
      expect((err as Error).message).toMatch(message);
    }
  });

  it("reports an unreadable password file as a missing secret", async () => {
    const err = await run(["--user", "op", "--password-file", path.join(dir, "nope")]).catch((e: unknown) => e);
    expect(isKerfError(err, "SECRET_MISSING")).toBe(true);
    expect((err as Error).message).toMatch(/cannot read --password-file .*nope: ENOENT/);
  });
});
