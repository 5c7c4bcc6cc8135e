import { X509Certificate } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../src/log.ts";
import { certificateInfo } from "../../src/opcua/trust/cert-checks.ts";
import { openClientPki } from "../../src/opcua/trust/pki.ts";
import { startSimulator } from "../../src/simulator/server.ts";
import { GOOD_CONFIG } from "../config/helpers.ts";
import { tempDir } from "../helpers/env.ts";
import { kerf } from "./helpers.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("commissioning on a new install (README, Trusting a machine)", () => {
  it("kerf endpoints --state-dir creates the connector's certificate as kerf run would, says so once, and trust accept follows", async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const sim = await startSimulator({ pkiDir: path.join(tmp.dir, "sim"), port: 0, logger: silentLogger() });
    cleanups.push(() => sim.stop());
    // The mapping file does not exist yet: browse is how one starts it.
    const config = path.join(tmp.dir, "kerf.yaml");
    writeFileSync(config, GOOD_CONFIG.replace("instance: kerf-test", "instance: line-7"));
    const stateDir = path.join(tmp.dir, "state");
    const certificateFile = path.join(stateDir, "pki/own/certs/client_certificate.pem");
    const env = { ...process.env, KERF_STATE_DIR: "", KERF_CONFIG: "" };

    const first = await kerf(["endpoints", sim.endpointUrl, "--state-dir", stateDir, "--config", config], { env });
    expect(first.stderr).toBe(`kerf: created the connector's OPC UA certificate ${certificateFile} (instance line-7, applicationUri urn:kerf:line-7)\n`);
    expect(first.stdout).toContain(`not trusted; kept in rejected/ (kerf trust accept ${sim.thumbprint} --state-dir ${stateDir} trusts it)`);
    expect(first.code).toBe(0);

    // What kerf run makes of the same state dir and instance: this very certificate, not a new one.
    const made = new X509Certificate(readFileSync(certificateFile));
    const pki = await openClientPki({ dir: path.join(stateDir, "pki"), instance: "line-7", logger: silentLogger() });
    await pki.certificateManager.dispose();
    expect(pki.certificateDer.equals(made.raw)).toBe(true);
    expect(certificateInfo(made.raw).applicationUri).toBe(pki.applicationUri);
    expect(made.subject).toContain("CN=kerf line-7");

    const again = await kerf(["endpoints", sim.endpointUrl, "--state-dir", stateDir, "--config", config], { env });
    expect(again.stderr).toBe("");
    const accepted = await kerf(["trust", "accept", sim.thumbprint.slice(0, 8), "--state-dir", stateDir], { env });
    expect(accepted.stdout).toContain(`trusted ${sim.thumbprint}`);
    expect(accepted.code).toBe(0);

    // kerf browse lists 3 levels by default, and says when there is more below
    const root = ["--mode", "None", "--root", "nsu=urn:kerf:simulator;s=Machine"];
    const [shallow, deep] = await Promise.all([kerf(["browse", sim.endpointUrl, ...root], { env }), kerf(["browse", sim.endpointUrl, ...root, "--depth", "12"], { env })]);
    expect(shallow.stdout).toMatch(/^# \d+ variables below Machine \(nsu=urn:kerf:simulator;s=Machine\), 3 levels deep/m);
    expect(shallow.stderr).toBe("kerf browse: listed 3 levels below the root (--depth 3, the default); there are nodes further down whose variables are not listed: raise --depth to include them\n");
    expect(deep.stderr).toBe("");
    expect(deep.stdout.split("\n").filter((l) => l.includes("key:")).length).toBeGreaterThan(shallow.stdout.split("\n").filter((l) => l.includes("key:")).length);
  });

  it("without the config it says what it needs, and creates nothing half", async () => {
    const tmp = await tempDir();
    cleanups.push(tmp.cleanup);
    const stateDir = path.join(tmp.dir, "state");
    const missing = path.join(tmp.dir, "no-such.yaml");
    const r = await kerf(["trust", "add-crl", path.join(tmp.dir, "ca.crl"), "--state-dir", stateDir], { env: { ...process.env, KERF_CONFIG: missing } });
    expect(r.stderr).toBe(
      `kerf: the connector has no OPC UA certificate in ${path.join(stateDir, "pki")} yet, and making one needs its instance id: cannot read config file ${missing}: no such file\n` +
        "  give the connector's config with --config FILE (default $KERF_CONFIG or /etc/kerf/kerf.yaml, as for kerf run)\n",
    );
    expect(r.code).toBe(1);
    expect(existsSync(path.join(stateDir, "pki"))).toBe(false);
  });
});
