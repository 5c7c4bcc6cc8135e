import { readdirSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { silentLogger } from "../../../src/log.ts";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import { describeUntrustedServer } from "../../../src/opcua/trust/explain.ts";
import { readTofu, trustOnFirstUse, writeTofu } from "../../../src/opcua/trust/tofu.ts";
import type { Message } from "../../../src/message.ts";
import { waitFor } from "../../helpers/env.ts";
import { makeAppCert } from "./certs.ts";
import { bench, capturingLogger, cleanupList, connectAndCheck, simulator, spec, WARN } from "./helpers.ts";

const cleanups = cleanupList();
afterEach(cleanups.run);

describe("trust on first use", () => {
  it("trusts the first certificate of an endpoint with a WARN line, then refuses a different one on the same endpoint", async () => {
    const b = await bench(cleanups);
    const first = await simulator(b, cleanups, "first");
    const s = spec(first, { trustOnFirstUse: true });
    const { logger, lines } = capturingLogger();

    // Off unless asked for: nothing is trusted.
    await trustOnFirstUse(b.pki, { ...s, trustOnFirstUse: false }, logger);
    expect(readdirSync(path.join(b.pki.certificateManager.rootDir, "trusted/certs"))).toEqual([]);

    await trustOnFirstUse(b.pki, s, logger);
    const trustedLine = lines.find((l) => l.level === WARN && l.msg.includes(`trusted the server certificate ${first.thumbprint}`));
    expect(trustedLine).toMatchObject({ machine: "saw", endpoint: first.endpointUrl, thumbprint: first.thumbprint });
    expect(trustedLine!.msg).toMatch(/without an operator's check; turn trustOnFirstUse off/);

    const messages: Message[] = [];
    const session = new MachineSession({ spec: s, pki: b.pki, sink: { write: (m) => messages.push(...m) }, logger: silentLogger(), backoff: { initialMs: 100, maxMs: 300 } });
    session.start();
    await waitFor("connected", () => session.state === "connected", 15_000);
    await session.stop();
    // A second call changes nothing and says nothing: the certificate is trusted.
    const count = lines.length;
    await trustOnFirstUse(b.pki, s, logger);
    expect(lines.length).toBe(count);

    // Another server answers on the same endpoint with another certificate.
    const port = first.port;
    await first.stop();
    const other = await makeAppCert({ applicationUri: "urn:test:impostor", ips: ["127.0.0.1"] });
    const second = await simulator(b, cleanups, "second", other, { port });
    expect(second.endpointUrl).toBe(first.endpointUrl);
    await trustOnFirstUse(b.pki, s, logger);
    const refusedLine = lines.find((l) => l.level === WARN && l.msg.includes(`presents certificate ${other.thumbprint}, not ${first.thumbprint} trusted on first use`));
    expect(refusedLine).toBeDefined();
    expect(readdirSync(path.join(b.pki.certificateManager.rootDir, "trusted/certs")).some((f) => f.includes(other.thumbprint))).toBe(false);

    const { error } = await connectAndCheck(s, b.pki);
    expect(error?.message).toMatch(/BadCertificateUntrusted/);
    const message = await describeUntrustedServer(b.pki, s);
    expect(message).toContain(`NOT the certificate trusted on first use for this endpoint`);
    expect(message).toContain(`kerf trust accept ${other.thumbprint}`);
  });

  it("keeps the record of every endpoint when several machines are commissioned at once", async () => {
    const b = await bench(cleanups);
    const root = b.pki.certificateManager.rootDir;
    const urls = ["opc.tcp://saw:4840", "opc.tcp://edgebander:4840", "opc.tcp://cnc:4840"];
    await Promise.all(urls.map((url, i) => writeTofu(root, url, { thumbprint: `t${i}`, at: new Date().toISOString() })));
    const records = await readTofu(root);
    expect(Object.fromEntries(Object.entries(records).map(([url, r]) => [url, r.thumbprint]))).toEqual({ [urls[0]!]: "t0", [urls[1]!]: "t1", [urls[2]!]: "t2" });
  });

  it("does not trust a first certificate that fails the host name check", async () => {
    const b = await bench(cleanups);
    const cert = await makeAppCert({ applicationUri: "urn:test:elsewhere", dns: ["plc.example"] });
    const sim = await simulator(b, cleanups, "elsewhere", cert);
    const { logger, lines } = capturingLogger();
    await trustOnFirstUse(b.pki, spec(sim, { trustOnFirstUse: true }), logger);
    expect(lines.find((l) => l.level === WARN)?.msg).toMatch(/not trusting the server certificate: .* does not name the host 127\.0\.0\.1/);
    expect(readdirSync(path.join(b.pki.certificateManager.rootDir, "trusted/certs"))).toEqual([]);
  });
});
