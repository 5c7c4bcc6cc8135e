/**
 * The connection lifecycle while values flow: certificates renewed over EST and access tokens
 * renewed at the authorization server, both short-lived, in one connector. Nothing is lost, and
 * after each renewal the cloud accepts requests from the new certificate with a token bound to
 * it (the devcloud checks cnf x5t#S256 against the connection's certificate on every request).
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { checkSeries, DEMO_MACHINE, loadKey, startEnvironment, waitFor } from "../helpers/env.ts";

const COUNTERS = 20;
let env: Awaited<ReturnType<typeof startEnvironment>> | undefined;
afterEach(async () => {
  await env?.stop();
  env = undefined;
});

describe("certificate and token renewal mid-stream", () => {
  it("renews both repeatedly, loses nothing, and each new certificate's requests carry a token bound to it", { timeout: 150_000 }, async () => {
    env = await startEnvironment({ load: { count: COUNTERS, periodMs: 100 }, certTtlSeconds: 12, tokenTtlSeconds: 4 });
    const { agent, demo } = env;
    const cloud = demo.devcloud;
    const renewal = agent.renewal!;
    expect(renewal).not.toBeNull();
    // Three certificates in service: the enrolled one and two renewals, each confirmed by the cloud.
    await waitFor("two certificate renewals", () => renewal.renewals >= 2, 90_000, 200);
    await waitFor("requests accepted from three certificates", () => cloud.tokens.acceptedBySerial.size >= 3, 30_000, 200);

    // health.json tells the operator about the tokens too, without the token itself
    const report = await waitFor("tokens in health.json", () => {
      const r = JSON.parse(readFileSync(path.join(demo.connectorStateDir, "health.json"), "utf8")) as { tokens?: { renewals: number; expiresAt: string | null; lastError: string | null } };
      return (r.tokens?.renewals ?? 0) >= 1 && r.tokens;
    });
    expect(report).toEqual({ renewals: expect.any(Number), expiresAt: expect.stringMatching(/^\d{4}-/), nextRenewalAt: expect.stringMatching(/^\d{4}-/), lastError: null });

    const final = await agent.stop({ drainMs: 10_000 });
    expect(final.buffer.items).toBe(0);
    expect(final.buffer.droppedItems).toBe(0);
    expect(final.tokens!.renewals).toBeGreaterThanOrEqual(3);
    // every certificate that reached ingest also came with tokens bound to it that ingest accepted
    for (const serial of cloud.clientCertificates.keys()) expect(cloud.tokens.acceptedBySerial.get(serial) ?? 0, `certificate ${serial}`).toBeGreaterThan(0);
    for (let i = 0; i < COUNTERS; i++) {
      const s = checkSeries(cloud.store.items(DEMO_MACHINE, loadKey(i)));
      expect(s.count, loadKey(i)).toBeGreaterThan(50);
      expect(s.gaps, loadKey(i)).toEqual([]);
      expect(s.duplicates, loadKey(i)).toBe(0);
    }
  });
});
