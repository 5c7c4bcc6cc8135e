import { describe, expect, it } from "vitest";
import { isKerfError } from "../../src/errors.ts";
import { validateLoad } from "../../src/simulator/load-options.ts";
import { loadCounterId, loadNodeId, MAX_LOAD_COUNT, SIM_NODES, simulatorMapping, WW_STATE } from "../../src/simulator/nodes.ts";
import { DUST_AIRFLOW_MIN, MachineSimulation, type MachineSnapshot } from "../../src/simulator/simulation.ts";

function run(sim: MachineSimulation, ms: number, stepMs = 100): MachineSnapshot[] {
  const out: MachineSnapshot[] = [];
  for (let t = 0; t < ms; t += stepMs) out.push({ ...sim.step(stepMs) });
  return out;
}

describe("machine simulation", () => {
  it("starts working and ramps the spindle up, then feeds and counts pieces", () => {
    const sim = new MachineSimulation({ alarmPeriodMs: 3_600_000 });
    expect(sim.snapshot.state).toBe(WW_STATE.WORKING);
    expect(sim.snapshot.spindleRpm).toBe(0);
    const trace = run(sim, 15_000);
    const rpm = trace.map((s) => s.spindleRpm);
    expect(rpm[5]!).toBeGreaterThan(rpm[0]!);
    expect(rpm[15]!).toBeGreaterThan(rpm[5]!);
    expect(Math.max(...rpm)).toBeLessThanOrEqual(18_000 * 1.01);
    // the feed waits until the spindle is near speed
    const firstFeed = trace.findIndex((s) => s.feedRate > 0);
    expect(trace[firstFeed]!.spindleRpm).toBeGreaterThan(0.9 * 18_000);
    const last = trace.at(-1)!;
    expect(last.piecesOut).toBeGreaterThan(trace[0]!.piecesOut);
    expect(last.relativePiecesOut).toBe(last.piecesOut - 48_211);
    expect(last.lengthMm).toBeGreaterThan(trace[0]!.lengthMm);
  });

  it("never lets a counter or time go backwards, and cycles through READY/STANDBY/WORKING", () => {
    const sim = new MachineSimulation({ alarmPeriodMs: 3_600_000, seed: 7 });
    const trace = run(sim, 10 * 60_000, 250);
    for (let i = 1; i < trace.length; i++) {
      const [a, b] = [trace[i - 1]!, trace[i]!];
      for (const k of ["piecesOut", "piecesIn", "relativePiecesOut", "runsGood", "machineOnMs", "workingMs", "lengthMm"] as const) {
        expect(b[k], k).toBeGreaterThanOrEqual(a[k]);
      }
      expect(b.machineOnMs).toBeGreaterThan(a.machineOnMs);
    }
    const states = new Set(trace.map((s) => s.state));
    expect(states).toContain(WW_STATE.WORKING);
    expect(states).toContain(WW_STATE.READY);
    expect(states).toContain(WW_STATE.STANDBY);
    // at rest the spindle and the feed stop
    const resting = trace.filter((s, i) => s.state === WW_STATE.STANDBY && trace[i - 20]?.state === WW_STATE.STANDBY);
    expect(resting.length).toBeGreaterThan(0);
    for (const s of resting) expect(s.feedRate).toBe(0);
    expect(new Set(trace.map((s) => s.program)).size).toBeGreaterThan(1);
  });

  it("drops dust airflow once per alarm period and stops a working machine in ERROR meanwhile", () => {
    const sim = new MachineSimulation({ alarmPeriodMs: 4000 });
    const trace = run(sim, 8000);
    const low = trace.map((s) => !s.dustAirflowOk);
    // low for a quarter of each period, starting half-way
    expect(low.filter(Boolean).length).toBeGreaterThanOrEqual(16);
    expect(low.filter(Boolean).length).toBeLessThanOrEqual(24);
    expect(low.slice(0, 19).some(Boolean)).toBe(false);
    for (const s of trace) expect(s.dustAirflowOk).toBe(s.dustAirflow >= DUST_AIRFLOW_MIN);
    const firstLow = low.indexOf(true);
    expect(trace[firstLow]!.state).toBe(WW_STATE.ERROR);
    const recovered = trace.slice(firstLow).find((s) => s.dustAirflowOk)!;
    expect(recovered.state).toBe(WW_STATE.READY);
  });

  it("is repeatable for a given seed", () => {
    const a = run(new MachineSimulation({ seed: 42 }), 5000);
    const b = run(new MachineSimulation({ seed: 42 }), 5000);
    expect(a).toEqual(b);
  });
});

describe("node ids", () => {
  it("formats load counters with five digits in our namespace", () => {
    expect(loadNodeId(0)).toBe("nsu=urn:kerf:simulator;s=Load.Counter.00000");
    expect(loadNodeId(42)).toBe("nsu=urn:kerf:simulator;s=Load.Counter.00042");
    expect(loadCounterId(MAX_LOAD_COUNT - 1)).toBe("Load.Counter.99999");
    for (const bad of [-1, MAX_LOAD_COUNT, 1.5, Number.NaN]) expect(() => loadNodeId(bad)).toThrow(expect.objectContaining({ code: "INTERNAL" }));
  });

  it("gives the woodworking members stable string ids by browse path", () => {
    expect(SIM_NODES.currentState).toBe("nsu=urn:kerf:simulator;s=Machine-State-Machine-Overview-CurrentState");
    expect(SIM_NODES.spindleSpeed).toBe("nsu=urn:kerf:simulator;s=Spindle.Speed");
    const mapping = simulatorMapping("saw-1");
    expect(mapping.machine).toBe("saw-1");
    expect(new Set(mapping.points.map((p) => p.key)).size).toBe(mapping.points.length);
    expect(mapping.points.find((p) => p.key === "spindle.speed")).toEqual({ key: "spindle.speed", node: SIM_NODES.spindleSpeed, unit: "rpm" });
  });

  it("refuses load settings outside the supported range", () => {
    expect(() => validateLoad({ count: 100_000, periodMs: 1000 })).not.toThrow();
    for (const bad of [
      { count: 0, periodMs: 100 },
      { count: 100_001, periodMs: 100 },
      { count: 10, periodMs: 5 },
      { count: 2.5, periodMs: 100 },
    ]) {
      let err: unknown;
      try {
        validateLoad(bad);
      } catch (e) {
        err = e;
      }
      expect(isKerfError(err, "USAGE"), JSON.stringify(bad)).toBe(true);
    }
  });
});
