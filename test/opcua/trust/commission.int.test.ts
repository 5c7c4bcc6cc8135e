import { readdirSync } from "node:fs";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import YAML from "yaml";
import { afterEach, describe, expect, it } from "vitest";
import { MappingSchema } from "../../../src/config/schema.ts";
import { SIM_NODES } from "../../../src/simulator/nodes.ts";
import { bench, cleanupList, kerf, simulator } from "./helpers.ts";

const cleanups = cleanupList();
afterEach(cleanups.run);

describe("commissioning commands", () => {
  it("kerf endpoints lists modes, policies, token types and the certificate, and keeps an untrusted one ready for accept", async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a", undefined, { users: [{ username: "op", password: "pw" }] });
    const [text, json] = await Promise.all([kerf("endpoints", sim.endpointUrl, "--state-dir", b.stateDir), kerf("endpoints", sim.endpointUrl, "--json")]);

    expect(text.code).toBe(0);
    expect(text.stdout).toContain(`11 endpoints of "Kerf Simulator" (applicationUri ${sim.applicationUri})`);
    expect(text.stdout).toMatch(/^SignAndEncrypt +Aes256_Sha256_RsaPss +UserName \(Aes256_Sha256_RsaPss\), Certificate \(Aes256_Sha256_RsaPss\), Anonymous$/m);
    expect(text.stdout).toMatch(/^Sign +Basic128Rsa15 \* /m);
    expect(text.stdout).toContain(`server certificate ${sim.thumbprint} (SHA-1)`);
    expect(text.stdout).toContain("subject         O=Kerf, CN=Kerf Simulator");
    expect(text.stdout).toContain(`not trusted; kept in rejected/ (kerf trust accept ${sim.thumbprint} --state-dir ${b.stateDir} trusts it)`);
    expect(readdirSync(path.join(b.stateDir, "pki/rejected")).some((f) => f.includes(sim.thumbprint))).toBe(true);

    expect(json.code).toBe(0);
    const parsed = JSON.parse(json.stdout) as { endpoints: { securityMode: string; securityPolicy: string; userTokens: { type: string; policy: string }[]; certificate: { thumbprint: string; subject: string }; applicationUri: string }[] };
    expect(parsed.endpoints).toHaveLength(11);
    const none = parsed.endpoints.find((e) => e.securityMode === "None")!;
    expect(none.securityPolicy).toBe("None");
    // Over a None channel the password is still encrypted, with the token's own policy.
    expect(none.userTokens.filter((t) => t.type === "UserName").every((t) => t.policy !== "None")).toBe(true);
    expect(new Set(parsed.endpoints.map((e) => e.certificate.thumbprint))).toEqual(new Set([sim.thumbprint]));
    expect(parsed.endpoints.every((e) => e.applicationUri === sim.applicationUri)).toBe(true);

    const down = await kerf("endpoints", "opc.tcp://127.0.0.1:1", "--timeout", "2000");
    expect(down.code).toBe(1);
    expect(down.stderr).toMatch(/^kerf: cannot get the endpoints of opc\.tcp:\/\/127\.0\.0\.1:1: /);
  });

  it("kerf browse prints a mapping skeleton with nsu= ids that loads through the mapping schema, securely once trusted", async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a", undefined, { users: [{ username: "op", password: "pw" }] });
    const root = ["--root", "nsu=urn:kerf:simulator;s=Machine", "--depth", "4", "--machine", "saw-1"];
    const passwordFile = path.join(b.dir, "password");
    await writeFile(passwordFile, "pw\n");
    await b.pki.certificateManager.trustCertificate(sim.certificateDer);
    const [plain, secure] = await Promise.all([
      kerf("browse", sim.endpointUrl, "--mode", "None", ...root),
      kerf("browse", sim.endpointUrl, "--state-dir", b.stateDir, "--user", "op", "--password-file", passwordFile, ...root),
    ]);
    expect(plain.stderr).toBe("");
    expect(plain.code).toBe(0);
    expect(secure.code).toBe(0);

    const mapping = MappingSchema.parse(YAML.parse(plain.stdout));
    const groups = mapping.machines["saw-1"]!.groups;
    const nodes = new Map(groups.flatMap((g) => g.nodes.map((n) => [n.node, { key: n.key, group: g.name }] as const)));
    expect(nodes.get(SIM_NODES.spindleSpeed)).toEqual({ key: "ManufacturerSpecific.SpindleSpeed", group: "ManufacturerSpecific" });
    expect(nodes.get(SIM_NODES.currentState)).toEqual({ key: "State.Machine.Overview.CurrentState", group: "State" });
    expect(nodes.get(SIM_NODES.serialNumber)).toEqual({ key: "Identification.SerialNumber", group: "Identification" });
    expect([...nodes.keys()].every((id) => id!.startsWith("nsu=") || /^i=\d+$/.test(id!))).toBe(true);
    // The data type rides along as a comment, and a variable's own properties are left out.
    expect(plain.stdout).toContain(`node: "${SIM_NODES.spindleSpeed}"  # Double`);
    expect(plain.stdout).not.toMatch(/EURange|EngineeringUnits/);
    expect(plain.stdout).toMatch(/^# kerf browse opc\.tcp:\/\/127\.0\.0\.1:\d+ --mode None --root 'nsu=urn:kerf:simulator;s=Machine'/);

    // Same skeleton over SignAndEncrypt with a user, apart from the header.
    const body = (s: string) => s.split("\n").filter((l) => !l.startsWith("#")).join("\n");
    expect(body(secure.stdout)).toBe(body(plain.stdout));

    const bad = await kerf("browse", sim.endpointUrl, "--mode", "None", "--root", "nsu=urn:kerf:simulator;s=NoSuchNode");
    expect(bad.code).toBe(1);
    expect(bad.stderr).toMatch(/^kerf: --root nsu=urn:kerf:simulator;s=NoSuchNode: the server has no such node/);
  });
});
