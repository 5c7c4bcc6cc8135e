import { describe, expect, it } from "vitest";
import { LatestValues } from "../../src/agent/latest-values.ts";

describe("the latest values the update lock reads", () => {
  it("keeps the newest value of each watched key and nothing else", () => {
    const latest = new LatestValues([{ machine: "saw", key: "job.state" }]);
    expect(latest.get("saw", "job.state")).toBeUndefined();
    const item = (key: string, v: unknown) => ({ key, v, q: 0, t: "2026-12-06T00:00:00.000Z" });
    latest.observe([{ kind: "data", machine: "saw", items: [item("job.state", "running"), item("spindle.speed", 1)] }]);
    latest.observe([{ kind: "data", machine: "saw", items: [item("job.state", "idle")] }, { kind: "data", machine: "edge", items: [item("job.state", "running")] }]);
    expect(latest.get("saw", "job.state")).toBe("idle");
    expect(latest.get("saw", "spindle.speed")).toBeUndefined();
    expect(latest.get("edge", "job.state")).toBeUndefined();
    expect(new LatestValues([]).empty).toBe(true);
  });
});
