import { spawn, type ChildProcess } from "node:child_process";
import path from "node:path";
import { AttributeIds, BrowseDirection, MessageSecurityMode, NodeClass, OPCUAClient, SecurityPolicy } from "node-opcua-client";
import { afterEach, describe, expect, it } from "vitest";
import { ROGUE_HTML, ROGUE_NODES, ROGUE_SIZES, SIMULATOR_NAMESPACE_URI } from "../../src/simulator/nodes.ts";
import { tempDir } from "../helpers/env.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  const exited = new Promise<void>((resolve) => child.once("exit", () => resolve()));
  child.kill("SIGKILL");
  return exited;
}

describe("kerf simulate --rogue", () => {
  it("says so in its banner and serves the Rogue folder", async () => {
    const tmp = await tempDir("kerf-rogue-cli-");
    cleanups.push(tmp.cleanup);
    const child = spawn(process.execPath, ["src/main.ts", "simulate", "--rogue", "--port", "0", "--state-dir", tmp.dir], {
      cwd: path.resolve(import.meta.dirname, "../.."),
      stdio: ["ignore", "pipe", "pipe"],
      env: { ...process.env, KERF_LOG_LEVEL: "error" },
    });
    cleanups.push(() => stop(child));
    const banner = await new Promise<string>((resolve, reject) => {
      let out = "";
      const timer = setTimeout(() => reject(new Error(`no banner in 20 s:\n${out}`)), 20_000);
      child.stdout!.on("data", (chunk: Buffer) => {
        out += chunk.toString();
        if (/started in \d+ ms/.test(out)) {
          clearTimeout(timer);
          resolve(out);
        }
      });
      child.once("exit", (code) => reject(new Error(`exited with ${code}:\n${out}`)));
    });
    expect(banner).toMatch(/^rogue {8}Objects\/Rogue serves hostile values/m);
    const endpoint = /^endpoint +(\S+)$/m.exec(banner)![1]!;

    // SecurityMode None needs no trust on either side
    const client = OPCUAClient.create({ securityMode: MessageSecurityMode.None, securityPolicy: SecurityPolicy.None, endpointMustExist: false, connectionStrategy: { maxRetry: 0 } });
    cleanups.push(() => client.disconnect());
    await client.connect(endpoint);
    const session = await client.createSession();
    const ns = (await session.readNamespaceArray()).indexOf(SIMULATOR_NAMESPACE_URI);
    const id = (nsu: string) => nsu.replace(`nsu=${SIMULATOR_NAMESPACE_URI}`, `ns=${ns}`);

    const browsed = await session.browse({ nodeId: id(ROGUE_NODES.folder), browseDirection: BrowseDirection.Forward, resultMask: 63 });
    const names = browsed.references!.filter((r) => r.nodeClass === NodeClass.Variable).map((r) => r.browseName.name).sort();
    expect(names).toEqual(["BadUtf8", "BadUtf8Bytes", "DeepNested", "Html", "HugeArray", "HugeString", "OverTransport", "ProtoKeys"]);
    const [html, array] = await session.read([
      { nodeId: id(ROGUE_NODES.html), attributeId: AttributeIds.Value },
      { nodeId: id(ROGUE_NODES.hugeArray), attributeId: AttributeIds.Value },
    ]);
    expect(html!.value.value).toBe(ROGUE_HTML);
    expect(array!.value.value).toHaveLength(ROGUE_SIZES.hugeArrayLength);
  });
});
