import { createHash } from "node:crypto";
import { existsSync, readFileSync, statSync } from "node:fs";
import { afterEach, describe, expect, it } from "vitest";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import { slotFiles } from "../../../src/opcua/trust/app-cert.ts";
import type { Message } from "../../../src/message.ts";
import { waitFor } from "../../helpers/env.ts";
import { bench, capturingLogger, cleanupList, kerf, simulator, spec, WARN } from "./helpers.ts";

const INFO = 30;

const cleanups = cleanupList();
afterEach(cleanups.run);

const thumbprintOf = (file: string) => createHash("sha1").update(readFileSync(file)).digest("hex");
const pemThumbprint = (file: string) => {
  const body = readFileSync(file, "utf8").replace(/-----(BEGIN|END) CERTIFICATE-----/g, "").replace(/\s+/g, "");
  return createHash("sha1").update(Buffer.from(body, "base64")).digest("hex");
};

/** Spindle values received so far. */
const spindleValues = (messages: Message[]) => messages.filter((m) => m.kind === "data").flatMap((m) => (m.kind === "data" ? m.items.filter((i) => i.key === "spindle") : [])).length;

describe("kerf pki renew (the connector's OPC UA application certificate)", () => {
  it("stages a new certificate beside the current one and prints its SHA-1 thumbprint and the file to copy", async () => {
    const b = await bench(cleanups);
    const root = b.pki.certificateManager.rootDir;
    const current = slotFiles(root, "current");
    const before = pemThumbprint(current.certificateFile);

    const r = await kerf("pki", "renew", "--state-dir", b.stateDir);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    const next = slotFiles(root, "next");
    const der = next.certificateFile.replace(/\.pem$/, ".der");
    const thumbprint = thumbprintOf(der);
    expect(pemThumbprint(next.certificateFile)).toBe(thumbprint);
    expect(r.stdout).toContain(`thumbprint (SHA-1)  ${thumbprint}`);
    expect(r.stdout).toContain(next.certificateFile);
    expect(r.stdout).toContain("applicationUri      urn:kerf:trust-test");
    // the current pair is untouched, the new key is private
    expect(pemThumbprint(current.certificateFile)).toBe(before);
    expect(thumbprint).not.toBe(before);
    expect(statSync(next.privateKeyFile).mode & 0o777).toBe(0o600);

    // Asked again, it shows the staged one rather than making another; status lists both.
    const again = await kerf("pki", "renew", "--state-dir", b.stateDir);
    expect(again.stdout).toContain(`a renewal is staged already`);
    expect(again.stdout).toContain(thumbprint);
    const status = await kerf("pki", "status", "--state-dir", b.stateDir);
    expect(status.code).toBe(0);
    expect(status.stdout).toMatch(new RegExp(`^current   thumbprint ${before} .*\\(\\d+ days left\\)`, "m"));
    expect(status.stdout).toMatch(new RegExp(`^staged    thumbprint ${thumbprint} `, "m"));
  });

  it("until the machine trusts the renewed certificate the connector keeps working on the old one; then it switches, promotes it and values keep flowing", { timeout: 90_000 }, async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a");
    await b.pki.certificateManager.trustCertificate(sim.certificateDer);
    const root = b.pki.certificateManager.rootDir;
    const current = slotFiles(root, "current");
    const old = pemThumbprint(current.certificateFile);
    const { logger, lines } = capturingLogger();
    const messages: Message[] = [];
    const session = new MachineSession({ spec: spec(sim), pki: b.pki, sink: { write: (m) => messages.push(...m) }, logger, renewalRetryMs: 1_000 });
    cleanups.add(() => session.stop());
    session.start();
    await waitFor("values", () => spindleValues(messages) > 0, 20_000);

    const renewed = await kerf("pki", "renew", "--state-dir", b.stateDir);
    expect(renewed.code).toBe(0);
    const next = slotFiles(root, "next");
    const newThumbprint = pemThumbprint(next.certificateFile);

    // The machine refuses it: the session is left alone, values go on, the old certificate stays current.
    const refusals = () => lines.filter((l) => l.machine === "saw" && l.msg.includes("does not accept the renewed OPC UA application certificate"));
    await waitFor("the renewed certificate refused twice", () => refusals().length >= 2, 30_000);
    // the operator is warned once; the retries are INFO
    expect(refusals().map((l) => l.level)).toEqual([WARN, ...refusals().slice(1).map(() => INFO)]);
    const connects = session.health().connects;
    const seen = spindleValues(messages);
    await waitFor("values after the refusals", () => spindleValues(messages) > seen + 5, 20_000);
    expect(session.state).toBe("connected");
    expect(session.health().connects).toBe(connects);
    expect(pemThumbprint(current.certificateFile)).toBe(old);
    expect(existsSync(next.certificateFile)).toBe(true);
    expect(b.pki.own.status().staged).toMatchObject({ thumbprint: newThumbprint, acceptedBy: [], waitingFor: ["saw"] });
    // What the warning tells the operator to trust.
    expect(lines.find((l) => l.msg.includes("does not accept the renewed"))!.msg).toContain(`Trust thumbprint ${newThumbprint} on the machine`);

    // A connector (re)started meanwhile tries the renewed one first and falls back at once.
    const second: Message[] = [];
    const restarted = new MachineSession({ spec: { ...spec(sim), machine: "saw-2" }, pki: b.pki, sink: { write: (m) => second.push(...m) }, logger, renewalRetryMs: 60_000 });
    cleanups.add(() => restarted.stop());
    restarted.start();
    await waitFor("values on the restarted session", () => spindleValues(second) > 0, 20_000);
    expect(restarted.health().lastError).toBeNull();
    expect(restarted.health().connects).toBe(1);
    expect(lines.some((l) => l.machine === "saw-2" && l.msg.includes("does not accept the renewed"))).toBe(true);
    await restarted.stop();

    // The operator trusts it on the machine: the session moves to it and it becomes current.
    await sim.trustClientCertificate(readFileSync(next.certificateFile.replace(/\.pem$/, ".der")));
    await waitFor("promoted", () => pemThumbprint(current.certificateFile) === newThumbprint, 30_000);
    expect(existsSync(next.certificateFile)).toBe(false);
    expect(pemThumbprint(slotFiles(root, "previous").certificateFile)).toBe(old);
    expect(createHash("sha1").update(b.pki.certificateDer).digest("hex")).toBe(newThumbprint);
    // one reconnect, onto the renewed certificate (promotion comes as its session is made, before it counts as connected)
    await waitFor("reconnected", () => session.health().connects === connects + 1 && session.state === "connected", 20_000);
    const after = spindleValues(messages);
    await waitFor("values after the switch", () => spindleValues(messages) > after + 5, 20_000);
    expect(session.state).toBe("connected");
    expect(b.pki.own.status().staged).toBeUndefined();
  });

  it("with two machines, each moves to the renewed certificate when it accepts it; it becomes current once both have", { timeout: 90_000 }, async () => {
    const b = await bench(cleanups);
    const simA = await simulator(b, cleanups, "a");
    const simB = await simulator(b, cleanups, "b");
    for (const sim of [simA, simB]) await b.pki.certificateManager.trustCertificate(sim.certificateDer);
    const root = b.pki.certificateManager.rootDir;
    const current = slotFiles(root, "current");
    const old = pemThumbprint(current.certificateFile);
    const { logger } = capturingLogger();
    const received = { a: [] as Message[], b: [] as Message[] };
    const sessions = (["a", "b"] as const).map((name) => {
      const sim = name === "a" ? simA : simB;
      const session = new MachineSession({ spec: { ...spec(sim), machine: `saw-${name}` }, pki: b.pki, sink: { write: (m) => received[name].push(...m) }, logger, renewalRetryMs: 1_000 });
      cleanups.add(() => session.stop());
      session.start();
      return session;
    });
    await waitFor("values from both", () => spindleValues(received.a) > 0 && spindleValues(received.b) > 0, 20_000);
    expect((await kerf("pki", "renew", "--state-dir", b.stateDir)).code).toBe(0);
    const next = slotFiles(root, "next");
    const newThumbprint = pemThumbprint(next.certificateFile);

    await simA.trustClientCertificate(readFileSync(next.certificateFile.replace(/\.pem$/, ".der")));
    await waitFor("saw-a on the renewed certificate", () => b.pki.own.status().staged?.acceptedBy.includes("saw-a"), 30_000);
    expect(b.pki.own.status().staged).toMatchObject({ thumbprint: newThumbprint, acceptedBy: ["saw-a"], waitingFor: ["saw-b"] });
    expect(pemThumbprint(current.certificateFile)).toBe(old);
    const [a, bb] = [spindleValues(received.a), spindleValues(received.b)];
    await waitFor("values from both meanwhile", () => spindleValues(received.a) > a + 5 && spindleValues(received.b) > bb + 5, 20_000);
    expect(sessions.map((s) => s.state)).toEqual(["connected", "connected"]);

    await simB.trustClientCertificate(readFileSync(next.certificateFile.replace(/\.pem$/, ".der")));
    await waitFor("promoted", () => pemThumbprint(current.certificateFile) === newThumbprint, 30_000);
    expect(pemThumbprint(slotFiles(root, "previous").certificateFile)).toBe(old);
    const [a2, b2] = [spindleValues(received.a), spindleValues(received.b)];
    await waitFor("values from both after", () => spindleValues(received.a) > a2 + 5 && spindleValues(received.b) > b2 + 5, 20_000);
  });
});
