import { readFileSync, writeFileSync } from "node:fs";
import { parse, stringify } from "yaml";
import { afterAll, expect, it } from "vitest";
import { SIM_NODES } from "../../src/simulator/nodes.ts";
import { DEMO_MACHINE, startEnvironment, waitFor } from "../helpers/env.ts";

// Misconfiguration shows at start (issue 16): the local policy is checked against the machine
// once connected, and what does not resolve is a health warning naming kerf.yaml:line.
let env: Awaited<ReturnType<typeof startEnvironment>> | undefined;
afterAll(() => env?.stop());

/** Entries that do not fit the simulator: a String node as a Double, a read-only node, a node that does not exist, wrong method inputs, a method that does not exist. */
function misconfigure(file: string): void {
  const config = parse(readFileSync(file, "utf8"));
  const rules = config.commands.machines[DEMO_MACHINE];
  // ServiceLevel (i=2267): a Byte only the server sets
  rules.write.push({ node: SIM_NODES.programName, type: "Double" }, { node: "i=2267", type: "Byte" }, { node: "nsu=urn:kerf:simulator;s=Nope", type: "Int32" });
  rules.call.push({ object: SIM_NODES.vendorObject, method: "nsu=urn:kerf:simulator;s=Machine.Nope", inputs: [] });
  rules.call[0].inputs = ["Int32"];
  writeFileSync(file, stringify(config));
}

it("names each writable node and callable method that does not fit the server, with file:line", async () => {
  env = await startEnvironment({ commands: true, editConfig: misconfigure });
  const file = env.demo.configFile;
  const warnings = await waitFor("the policy check", () => {
    const w = env!.agent.health().warnings.filter((p) => p.code === "COMMAND_POLICY").map((p) => p.reason);
    return w.length > 0 && w;
  });
  const lines = readFileSync(file, "utf8").split("\n");
  expect(warnings.map((w) => w.replace(/^.*kerf\.yaml:/, ""))).toEqual([
    expect.stringMatching(/^\d+:\d+: commands\.machines\.demo-saw\.write\.1\.type: node .*Program\.Name has DataType ns=0;i=12 \(expected Double/),
    expect.stringMatching(/commands\.machines\.demo-saw\.write\.2\.node: node i=2267 is not writable for the connector's session/),
    expect.stringMatching(/commands\.machines\.demo-saw\.write\.3\.node: node .*s=Nope does not resolve on the server \(BadNodeIdUnknown\)/),
    expect.stringMatching(/commands\.machines\.demo-saw\.call\.0\.inputs: method .*Machine\.Acknowledge takes \[String\] \(configured \[Int32\]\)/),
    expect.stringMatching(/commands\.machines\.demo-saw\.call\.1\.method: method .*Machine\.Nope does not resolve on the server \(BadNodeIdUnknown\)/),
  ]);
  expect(warnings.every((w) => w.startsWith(`${file}:`))).toBe(true);
  // the line named is where the entry is written
  const line = Number(/kerf\.yaml:(\d+):/.exec(warnings[0]!)![1]);
  expect([lines[line - 2], lines[line - 1]]).toEqual([expect.stringContaining("Program.Name"), expect.stringContaining("type: Double")]);
}, 60_000);
