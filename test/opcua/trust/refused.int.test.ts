import { readdirSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/log.ts";
import { describeConnectError } from "../../../src/opcua/session/connect-errors.ts";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import { describeConnectFailure, describeUntrustedServer } from "../../../src/opcua/trust/explain.ts";
import { keepRejected } from "../../../src/opcua/trust/store.ts";
import type { Message } from "../../../src/message.ts";
import { waitFor } from "../../helpers/env.ts";
import { bench, cleanupList, connectAndCheck, kerf, simulator, spec } from "./helpers.ts";

const cleanups = cleanupList();
afterEach(cleanups.run);

const rejectedFiles = (root: string) => readdirSync(path.join(root, "rejected"));
const trustedFiles = (root: string) => readdirSync(path.join(root, "trusted/certs"));

describe("a refused server certificate", () => {
  it("names the server, thumbprint, subject and the exact command; running that command lets the running session connect", async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a");
    const s = spec(sim);
    const root = b.pki.certificateManager.rootDir;

    // What node-opcua says when the connector refuses it, turned into the operator's sentence.
    const { error } = await connectAndCheck(s, b.pki);
    expect(error?.message).toMatch(/BadCertificateUntrusted/);
    const message = await describeConnectFailure(error, s, b.pki);
    expect(message).toContain(`saw (${sim.endpointUrl})`);
    expect(message).toContain(`thumbprint ${sim.thumbprint}`);
    expect(message).toContain('subject "O=Kerf, CN=Kerf Simulator"');
    expect(message).toContain(`kerf trust accept ${sim.thumbprint} --state-dir ${b.stateDir}`);
    expect(describeConnectError(error, s, message)).toBe(message);
    expect(rejectedFiles(root).some((f) => f.includes(sim.thumbprint))).toBe(true);

    // The session keeps retrying while the operator runs exactly the command from the message.
    const messages: Message[] = [];
    const session = new MachineSession({ spec: s, pki: b.pki, sink: { write: (m) => messages.push(...m) }, logger: silentLogger(), backoff: { initialMs: 100, maxMs: 300 } });
    cleanups.add(() => session.stop());
    session.start();
    await waitFor("a refused attempt", () => session.health().lastError ?? undefined, 15_000);
    expect(session.state).not.toBe("connected");

    const command = /kerf (trust accept \S+ --state-dir \S+)/.exec(message)![1]!.split(" ");
    const accepted = await kerf(...command);
    expect(accepted.stderr).toBe("");
    expect(accepted.code).toBe(0);
    expect(accepted.stdout).toContain(`trusted ${sim.thumbprint}`);
    expect(rejectedFiles(root)).toEqual([]);
    expect(trustedFiles(root).some((f) => f.includes(sim.thumbprint))).toBe(true);

    await waitFor("connected", () => session.state === "connected", 15_000);
    await waitFor("a spindle value", () => messages.some((m) => m.kind === "data" && m.items.some((i) => i.key === "spindle")), 10_000);
    // Nothing put it back into rejected/ on the way.
    expect(rejectedFiles(root)).toEqual([]);
  });

  it("accept also removes a stale copy left in rejected/ beside a trusted one", async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a");
    const root = b.pki.certificateManager.rootDir;
    await connectAndCheck(spec(sim), b.pki); // lands in rejected/
    // An operator copied the file into trusted/ by hand: node-opcua still refuses it.
    const { copyFile } = await import("node:fs/promises");
    const file = rejectedFiles(root)[0]!;
    await copyFile(path.join(root, "rejected", file), path.join(root, "trusted/certs", file));
    expect(String(await b.pki.certificateManager.verifyCertificate(sim.certificateDer))).toBe("BadCertificateUntrusted");

    const r = await kerf("trust", "accept", sim.thumbprint.slice(0, 10), "--state-dir", b.stateDir);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/trusted already; removed its stale copy from rejected/);
    expect(rejectedFiles(root)).toEqual([]);
    await waitFor("trusted in the running manager", async () => String(await b.pki.certificateManager.verifyCertificate(sim.certificateDer)) === "Good", 5_000);
  });

  it("an accept that lands between a refused attempt and its explanation is not undone", async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a");
    await connectAndCheck(spec(sim), b.pki); // lands in rejected/
    const root = b.pki.certificateManager.rootDir;
    // Another process (kerf trust accept) moves the file while this one still holds the old verdict.
    const file = rejectedFiles(root)[0]!;
    const { rename } = await import("node:fs/promises");
    await rename(path.join(root, "rejected", file), path.join(root, "trusted/certs", file));
    await waitFor("the running manager sees it trusted", () => b.pki.certificateManager.getTrustedCertificateCount() === 1, 5_000);

    expect(await keepRejected(b.pki.certificateManager, sim.certificateDer, sim.thumbprint)).toBe("trusted");
    expect(trustedFiles(root)).toEqual([file]);
    expect(rejectedFiles(root)).toEqual([]);
  });

  it("list, reject and bad input: clear output, non-zero exit without a stack trace", async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a");
    await connectAndCheck(spec(sim), b.pki);

    const listed = await kerf("trust", "list", "--state-dir", b.stateDir);
    expect(listed.code).toBe(0);
    const rejectedSection = listed.stdout.slice(listed.stdout.indexOf("rejected (1)"), listed.stdout.indexOf("issuers ("));
    expect(rejectedSection).toContain(`${sim.thumbprint}  O=Kerf, CN=Kerf Simulator`);
    expect(rejectedSection).toContain(`applicationUri ${sim.applicationUri}`);
    expect(rejectedSection).toMatch(/valid \d{4}-\d\d-\d\d to \d{4}-\d\d-\d\d/);
    expect(listed.stdout).toContain("trusted (0)");

    expect((await kerf("trust", "accept", sim.thumbprint, "--state-dir", b.stateDir)).code).toBe(0);
    const json = JSON.parse((await kerf("trust", "list", "--json", "--state-dir", b.stateDir)).stdout) as { trusted: { thumbprint: string; applicationUri: string }[]; rejected: unknown[] };
    expect(json.trusted).toMatchObject([{ thumbprint: sim.thumbprint, applicationUri: sim.applicationUri }]);
    expect(json.rejected).toEqual([]);

    const rejected = await kerf("trust", "reject", sim.thumbprint, "--state-dir", b.stateDir);
    expect(rejected.code).toBe(0);
    expect(rejected.stdout).toContain(`rejected ${sim.thumbprint}`);
    const root = b.pki.certificateManager.rootDir;
    expect(trustedFiles(root)).toEqual([]);
    expect(rejectedFiles(root).some((f) => f.includes(sim.thumbprint))).toBe(true);
    await waitFor("refused again", async () => String(await b.pki.certificateManager.verifyCertificate(sim.certificateDer)) === "BadCertificateUntrusted", 5_000);

    const runs: Promise<{ r: Awaited<ReturnType<typeof kerf>>; args: readonly string[]; text: RegExp }>[] = [];
    for (const [args, text] of [
      [["trust", "accept", "0123456789abcdef", "--state-dir", b.stateDir], /no certificate with thumbprint 0123456789abcdef in rejected\/ or trusted\//],
      [["trust", "accept", "xyz", "--state-dir", b.stateDir], /'xyz' is not a certificate thumbprint/],
      [["trust", "add-issuer", path.join(b.stateDir, "pki/own/private/private_key.pem"), "--state-dir", b.stateDir], /neither a PEM nor|no PEM CERTIFICATE block/],
      [["trust", "add-issuer", path.join(b.stateDir, "pki/own/certs/client_certificate.pem"), "--state-dir", b.stateDir], /is not a CA certificate/],
      [["trust", "add-crl", path.join(b.dir, "missing.crl"), "--state-dir", b.stateDir], /cannot read .*missing\.crl: ENOENT/],
      [["trust", "list", "--state-dir", path.join(b.dir, "nowhere")], /no OPC UA trust store at/],
    ] as const) {
      runs.push(kerf(...args).then((r) => ({ r, args, text })));
    }
    for (const { r, args, text } of await Promise.all(runs)) {
      expect(r.code, args.join(" ")).toBe(1);
      expect(r.stderr).toMatch(text);
      expect(r.stderr).not.toMatch(/\n\s+at /);
    }
  });

  it("describeUntrustedServer falls back to rejected/ when the server does not answer", async () => {
    const b = await bench(cleanups);
    const sim = await simulator(b, cleanups, "a");
    const s = spec(sim);
    await connectAndCheck(s, b.pki);
    await sim.stop();
    const message = await describeUntrustedServer(b.pki, s);
    expect(message).toContain(`kerf trust accept ${sim.thumbprint} --state-dir ${b.stateDir}`);
    expect(message).toMatch(/did not answer GetEndpoints; this is the newest certificate in rejected\/ that names 127\.0\.0\.1/);
  });
});
