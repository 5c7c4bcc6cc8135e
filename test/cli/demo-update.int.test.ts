/** `kerf demo --scenario update | bad-update`: the connector updates itself, or refuses a tampered release, while values flow. */
import { describe, expect, it } from "vitest";
import { kerf } from "./helpers.ts";

const summaryOf = (stdout: string) => JSON.parse(stdout.trimEnd().split("\n").at(-1)!) as Record<string, unknown>;

describe("kerf demo --scenario", () => {
  it("update: the new signed version is committed, and every value is acknowledged", { timeout: 200_000 }, async () => {
    const r = await kerf(["demo", "--scenario", "update", "--seconds", "150", "--quiet"], { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const s = summaryOf(r.stdout);
    expect(s.updateOutcome).toBe("committed");
    expect(s.versionStart).toMatch(/^\d+\.\d+\.\d+$/);
    expect(s.versionEnd).not.toBe(s.versionStart);
    expect(s.lost).toBe(0);
    expect(s.dropped).toBe(0);
    expect(s.acknowledged).toBe(Number(s.appended) - Number(s.buffered));
    expect(Number(s.acknowledged)).toBeGreaterThan(0);
  });

  it("bad-update: the tampered release is refused with its reason and the version stays", { timeout: 200_000 }, async () => {
    const r = await kerf(["demo", "--scenario", "bad-update", "--seconds", "150", "--quiet"], { timeoutMs: 180_000 });
    expect(r.code, r.stderr).toBe(0);
    const s = summaryOf(r.stdout);
    expect(s.updateOutcome).toMatch(/^refused: .*(hash|length)/i);
    expect(s.versionEnd).toBe(s.versionStart);
    expect(s.lost).toBe(0);
    expect(Number(s.acknowledged)).toBeGreaterThan(0);
  });

  it("refuses an unknown scenario", async () => {
    const r = await kerf(["demo", "--scenario", "upgrade"]);
    expect(r.code).toBe(2);
    expect(r.stderr).toMatch(/--scenario must be values, update, bad-update or partner, got 'upgrade'/);
  });
});
