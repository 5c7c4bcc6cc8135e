import { readFileSync, writeFileSync } from "node:fs";
import { afterAll, describe, expect, it } from "vitest";
import { parse, stringify } from "yaml";
import { checkSeries, DEMO_MACHINE, loadKey, startEnvironment, waitFor } from "../helpers/env.ts";

describe("mapping changes while running", () => {
  let env: Awaited<ReturnType<typeof startEnvironment>> | undefined;
  afterAll(async () => {
    await env?.stop();
  });

  it("are applied as a diff, a bad mapping is refused and the last good one kept", { timeout: 60_000 }, async () => {
    env = await startEnvironment({ load: { count: 6, periodMs: 100 } });
    const store = env.demo.devcloud.store;
    const mappingFile = env.loaded.mappingFile;
    await waitFor("values", () => Number(store.latest(DEMO_MACHINE)[loadKey(5)]?.v) >= 5);
    const session = env.agent.sessions[0]!;
    const connects = session.health().connects;

    // Remove load.00005, rename load.00004's key, add a group: the rest must keep flowing.
    const mapping = parse(readFileSync(mappingFile, "utf8"));
    const load = mapping.machines[DEMO_MACHINE].groups.find((g: { name: string }) => g.name === "load");
    load.nodes = load.nodes.filter((n: { key: string }) => n.key !== loadKey(5));
    load.nodes.find((n: { key: string }) => n.key === loadKey(4)).key = "renamed.4";
    writeFileSync(mappingFile, stringify(mapping));
    expect(await env.agent.reloadMapping()).toBe(true);
    const removedAt = Number(store.latest(DEMO_MACHINE)[loadKey(5)]?.v);
    await waitFor("the renamed key", () => store.latest(DEMO_MACHINE)["renamed.4"]);
    await new Promise((r) => setTimeout(r, 1000));
    expect(Number(store.latest(DEMO_MACHINE)[loadKey(5)]?.v)).toBeLessThanOrEqual(removedAt + 2);

    // A broken mapping: refused, nothing changes.
    writeFileSync(mappingFile, "machines:\n  demo-saw:\n    groups:\n      - name: x\n        nodes: [ { key: a, node: 'ns=1;i=oops' } ]\n");
    expect(await env.agent.reloadMapping()).toBe(false);
    const before = Number(store.latest(DEMO_MACHINE)["renamed.4"]!.v);
    await waitFor("values still flowing under the last good mapping", () => Number(store.latest(DEMO_MACHINE)["renamed.4"]!.v) > before + 5);

    expect(session.health().connects).toBe(connects);
    expect(session.state).toBe("connected");
    for (let i = 0; i < 4; i++) {
      const s = checkSeries(store.items(DEMO_MACHINE, loadKey(i)));
      expect(s.gaps, loadKey(i)).toEqual([]);
      expect(s.duplicates, loadKey(i)).toBe(0);
    }
  });
});
