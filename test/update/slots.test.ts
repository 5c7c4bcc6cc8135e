import { copyFileSync, existsSync, readdirSync, statSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { readPointer, slotsDir, writePointer } from "../../src/update/pointer.ts";
import { slotComplete, stageBundle, type StagingWriter } from "../../src/update/slots.ts";
import { makeBundle } from "../helpers/bundle.ts";
import { tempDir } from "../helpers/env.ts";

const cleanups: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

async function temp() {
  const t = await tempDir("kerf-slots-");
  cleanups.push(t.cleanup);
  return t.dir;
}

describe("slots", () => {
  it("reads the factory version when there is no pointer, and reads back what it wrote", async () => {
    const state = await temp();
    expect(readPointer(state, "1.0.0")).toEqual({ active: { slot: "factory", version: "1.0.0" }, previous: null, trial: null, lastOutcome: null, failed: [] });
    const p = { active: { slot: "a" as const, version: "2.0.0" }, previous: { slot: "factory" as const, version: "1.0.0" }, trial: { since: new Date().toISOString(), starts: 0 }, lastOutcome: null, failed: ["1.5.0"] };
    writePointer(state, p);
    // the factory version is the image's, whatever the pointer recorded
    expect(readPointer(state, "1.0.1")).toEqual({ ...p, previous: { slot: "factory", version: "1.0.1" } });
  });

  it("stages a bundle into a slot, complete with its marker", async () => {
    const state = await temp();
    const bundle = makeBundle(path.join(await temp(), "b"), "2.0.0");
    expect(slotComplete(state, { slot: "a", version: "2.0.0" }, "/nowhere")).toBe(false);
    await stageBundle(state, "a", bundle);
    expect(slotComplete(state, { slot: "a", version: "2.0.0" }, "/nowhere")).toBe(true);
    expect(slotComplete(state, { slot: "a", version: "2.0.1" }, "/nowhere")).toBe(false);
    expect(readdirSync(slotsDir(state))).toEqual(["a"]);
  });

  it("a full disk while staging fails cleanly: no staging folder, the slot's old complete copy stays", async () => {
    const state = await temp();
    await stageBundle(state, "a", makeBundle(path.join(await temp(), "b1"), "2.0.0"));
    let bytes = 0;
    const full: StagingWriter = {
      copyFile(from, to) {
        bytes += statSync(from).size;
        if (bytes > 200_000) throw Object.assign(new Error("ENOSPC: no space left on device, write"), { code: "ENOSPC" });
        copyFileSync(from, to);
      },
    };
    await expect(stageBundle(state, "b", makeBundle(path.join(await temp(), "b2"), "3.0.0"), { writer: full })).rejects.toMatchObject({ code: "UPDATE_STAGING", message: expect.stringContaining("no space left") });
    expect(readdirSync(slotsDir(state)).sort()).toEqual(["a"]);
    expect(slotComplete(state, { slot: "a", version: "2.0.0" }, "/nowhere")).toBe(true);
    expect(existsSync(path.join(slotsDir(state), "b"))).toBe(false);
  });

  it("refuses a bundle whose package.json names another version", async () => {
    const state = await temp();
    const bundle = makeBundle(path.join(await temp(), "b"), "2.0.0");
    await expect(stageBundle(state, "a", { dir: bundle.dir, version: "9.9.9" })).rejects.toMatchObject({ code: "UPDATE_BUNDLE" });
  });
});
