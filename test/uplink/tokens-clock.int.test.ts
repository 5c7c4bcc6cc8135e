/**
 * Tokens over time: expiring mid-stream, and a connector whose clock is 5 minutes off the
 * cloud's. The skew is real: the connector runs in its own process whose JavaScript clock a
 * preload shifts (fixtures/shift-clock.ts), while the devcloud and its authorization server run
 * here on the true clock. A fake Date inside one process would shift both sides at once (or
 * freeze time), which is no skew at all. Only JavaScript time moves: TLS certificate checks use
 * OpenSSL's clock, as a real skewed host's would not, which the devcloud CA's 5-minute
 * back-dating covers in any case.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { startDevCloud, type DevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import type { TokenAuthMethod } from "../../src/uplink/tokens.ts";
import { clientIdentity, countStored, notExactlyOnce, runCleanups, tempDir, type Cleanups } from "./helpers.ts";

const shiftClock = fileURLToPath(new URL("./fixtures/shift-clock.ts", import.meta.url));
const stream = fileURLToPath(new URL("./fixtures/token-stream.ts", import.meta.url));

let cloud: DevCloud;
const cleanups: Cleanups = [];

beforeEach(() => {
  cleanups.length = 0;
});
afterEach(async () => {
  await runCleanups(cleanups);
});

async function setup(tokenTtlSeconds: number) {
  const tmp = await tempDir("kerf-tokens-clock-");
  cleanups.push(tmp.remove);
  cloud = await startDevCloud({ dir: path.join(tmp.dir, "cloud"), logger: silentLogger(), storage: "memory", tokenTtlSeconds });
  cleanups.push(() => cloud.stop());
}

interface StreamResult {
  drained: boolean;
  last: number;
  stats: { unauthorized: number; ackedItems: number };
  health: { lastErrorCode: string | null; lastError: string | null };
  tokens: { renewals: number; lastError: string | null };
}

/** Streams for `seconds` from a child process whose clock is `shiftMs` off, and returns what it reports. */
async function streamFromChild(method: TokenAuthMethod, seconds: number, shiftMs: number): Promise<StreamResult> {
  const identity = await clientIdentity(cloud.ca, "line-1");
  const env = {
    ...process.env,
    KERF_CLOCK_SHIFT_MS: String(shiftMs),
    KERF_STREAM: JSON.stringify({ url: cloud.url, issuer: cloud.auth.issuer, pin: cloud.pin, caPem: cloud.ca.certPem, ...identity, method, seconds }),
  };
  const child = spawn(process.execPath, ["--import", shiftClock, stream], { env, stdio: ["ignore", "pipe", "pipe"] });
  cleanups.push(() => void child.kill("SIGKILL"));
  let out = "";
  let err = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (err += d));
  const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
  expect(code, err).toBe(0);
  return JSON.parse(out.trim().split("\n").at(-1)!) as StreamResult;
}

describe("tokens expiring mid-stream", () => {
  it("with a 4 s token lifetime over a 30 s stream nothing is lost and no request is refused as unauthorized", { timeout: 150_000 }, async () => {
    await setup(4);
    const seen = countStored(cloud.store);
    const result = await streamFromChild("tls_client_auth", 30, 0);
    expect(result.drained).toBe(true);
    expect(notExactlyOnce(seen, result.last)).toEqual([]);
    expect(result.last).toBeGreaterThan(1000);
    // Renewed ahead of expiry each time: the cloud never had to refuse a token.
    expect(cloud.tokens.refused).toBe(0);
    expect(result.stats.unauthorized).toBe(0);
    expect(result.tokens.renewals).toBeGreaterThanOrEqual(6);
    // (a renewal may be under way as the stream stops)
    expect(cloud.auth.counts.tokensIssued).toBeGreaterThanOrEqual(result.tokens.renewals + 1);
  });
});

describe("clock skew between connector and cloud", () => {
  for (const [label, shiftMs] of [
    ["connector 5 minutes ahead", 5 * 60_000],
    ["connector 5 minutes behind", -5 * 60_000],
  ] as const) {
    for (const method of ["private_key_jwt", "tls_client_auth"] as const) {
      it(`${label}, ${method}: tokens are obtained and renewed, nothing is lost or refused`, { timeout: 60_000 }, async () => {
        await setup(3);
        const seen = countStored(cloud.store);
        const result = await streamFromChild(method, 8, shiftMs);
        expect(result.tokens.lastError).toBeNull();
        expect(result.drained).toBe(true);
        expect(notExactlyOnce(seen, result.last)).toEqual([]);
        expect(cloud.auth.refusals).toEqual([]);
        expect(cloud.tokens.refused).toBe(0);
        expect(result.tokens.renewals).toBeGreaterThanOrEqual(2);
      });
    }
  }
});
