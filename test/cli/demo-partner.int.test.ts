import { expect, it } from "vitest";
import { kerf } from "./helpers.ts";

// kerf demo --scenario partner (issue 16): the example partner app changes the mapping through the
// cloud; a write the local policy forbids and a command from an app without a grant are refused.
it("runs the partner app against the demo and counts accepted and refused commands", async () => {
  const r = await kerf(["demo", "--scenario", "partner", "--seconds", "2", "--quiet"], { timeoutMs: 90_000 });
  expect(r.code, r.stderr).toBe(0);
  expect(r.stderr).toMatch(/^demo: partner app: mapping\.set on kerf-demo: succeeded$/m);
  expect(r.stderr).toMatch(/^demo: a write the local policy forbids: refused$/m);
  expect(r.stderr).toMatch(/^demo: a command from an app without a grant: 403 no_grant$/m);
  const summary = JSON.parse(r.stdout.trim().split("\n").at(-1)!) as { commandsAccepted: number; commandsRefused: number };
  // mapping.get and mapping.set; the forbidden write at the connector, the ungranted app at the cloud
  expect(summary).toMatchObject({ commandsAccepted: 2, commandsRefused: 2 });
}, 120_000);
