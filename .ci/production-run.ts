/**
 * Runs the product from a production install (.ci/image-steps.sh made it) against the
 * repository's simulator and devcloud, which a production install does not have:
 *   npx node .ci/production-run.ts APP_DIR WORK_DIR [NODE_FLAGS...]
 * `kerf endpoints` reads the simulator's endpoints; `kerf launch` (the image's entry point) starts
 * `kerf run`, which delivers values to the cloud and reports healthy; SIGTERM stops both with exit
 * code 0; `kerf update status` shows the factory version active. One JSON line on success.
 */
import { spawn } from "node:child_process";
import path from "node:path";
import { setupDemo } from "../src/demo/setup.ts";
import { silentLogger } from "../src/log.ts";

const [app, work, ...flags] = process.argv.slice(2);
if (!app || !work) throw new Error("usage: production-run.ts APP_DIR WORK_DIR [NODE_FLAGS...]");
const kerfBin = path.join(app, "bin/kerf.js");
const WAIT_MS = 90_000;

function kerf(args: string[]) {
  const child = spawn(process.execPath, [...flags, kerfBin, ...args], { cwd: app, stdio: ["ignore", "pipe", "pipe"] });
  let output = "";
  child.stdout.setEncoding("utf8").on("data", (d: string) => (output += d));
  child.stderr.setEncoding("utf8").on("data", (d: string) => (output += d));
  const exited = new Promise<number | null>((resolve) => child.once("exit", (code) => resolve(code)));
  return { child, exited, output: () => output };
}

async function expectExit(args: string[]): Promise<void> {
  const k = kerf(args);
  const code = await k.exited;
  if (code !== 0) throw new Error(`kerf ${args.join(" ")} exited ${code} from the production install:\n${k.output()}`);
}

const demo = await setupDemo({ stateDir: path.join(work, "run"), logger: silentLogger() });
let connector: ReturnType<typeof kerf> | undefined;
try {
  // kerf run enrols over the devcloud's EST on its first start, with the demo config's bootstrap token.
  await expectExit(["endpoints", demo.simulator.endpointUrl]);

  connector = kerf(["launch", "--config", demo.configFile, "--state-dir", demo.connectorStateDir]);
  const deadline = Date.now() + WAIT_MS;
  let healthy = false;
  while (!(healthy && demo.devcloud.store.counts().items > 0)) {
    if (Date.now() > deadline) throw new Error(`kerf launch from the production install: no healthy delivery within ${WAIT_MS} ms:\n${connector.output()}`);
    if (connector.child.exitCode !== null) throw new Error(`kerf launch from the production install exited ${connector.child.exitCode}:\n${connector.output()}`);
    await new Promise((resolve) => setTimeout(resolve, 500));
    healthy = (await kerf(["health", "--state-dir", demo.connectorStateDir]).exited) === 0;
  }
  connector.child.kill("SIGTERM");
  const code = await connector.exited;
  if (code !== 0) throw new Error(`kerf launch from the production install exited ${code} after SIGTERM:\n${connector.output()}`);
  connector = undefined;
  const status = kerf(["update", "status", "--json", "--state-dir", demo.connectorStateDir]);
  if ((await status.exited) !== 0 || !status.output().includes('"slot":"factory"')) throw new Error(`kerf update status from the production install:\n${status.output()}`);
  process.stdout.write(JSON.stringify({ cloudItems: demo.devcloud.store.counts().items, healthy }) + "\n");
} finally {
  if (connector?.child.exitCode === null) {
    connector.child.kill("SIGKILL");
    await connector.exited;
  }
  await demo.stop();
}
