/**
 * Refused credentials are not retried every second or two: a machine locks the account after a
 * few failed logins. The wait grows from a minute; a changed password file ends it at once.
 */
import { writeFileSync } from "node:fs";
import path from "node:path";
import { Writable } from "node:stream";
import { pino } from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { credentialsBackoffMs, credentialsRejection } from "../../src/opcua/session/credentials.ts";
import { MachineSession } from "../../src/opcua/session/session.ts";
import { loadNodeId } from "../../src/simulator/nodes.ts";
import type { Message } from "../../src/message.ts";
import { tempDir, waitFor } from "../helpers/env.ts";
import { endpointSpec, simulatorAndPki } from "../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

describe("a wrong password", () => {
  it("is tried again only after minutes, says so, and is tried at once when the password file changes", { timeout: 60_000 }, async () => {
    const tmp = await tempDir("kerf-credentials-");
    cleanups.push(tmp.cleanup);
    const { sim, pki } = await simulatorAndPki(tmp.dir, cleanups, { users: [{ username: "operator", password: "right-one" }], load: { count: 1, periodMs: 100 } });
    const passwordFile = path.join(tmp.dir, "password");
    writeFileSync(passwordFile, "wrong-one\n", { mode: 0o600 });
    const lines: Record<string, unknown>[] = [];
    const logger = pino({ level: "info" }, new Writable({ write: (chunk, _e, cb) => (lines.push(JSON.parse(String(chunk)) as Record<string, unknown>), cb()) }));
    const messages: Message[] = [];
    const spec = endpointSpec(sim, {
      user: { type: "username", username: "operator", password: "wrong-one", passwordFile },
      groups: [{ name: "g", publishingInterval: 100, nodes: [{ key: "c", node: loadNodeId(0), samplingInterval: 0, queueSize: 10, discardOldest: true }] }],
    });
    // the ordinary backoff of this session is 100 to 300 ms: a refusal must not use it
    const session = new MachineSession({ spec, pki, logger, sink: { write: (m) => messages.push(...m) }, backoff: { initialMs: 100, maxMs: 300 } });
    cleanups.push(() => session.stop());
    session.start();

    await waitFor("the refusal", () => session.health().credentialsRejected, 20_000);
    expect(session.health().lastError).toMatch(/BadUserAccessDenied/);
    // Count the server's refused logins over a window in which the ordinary backoff would have
    // retried some twenty times. (Not a duration: the count is what locks the account.)
    await new Promise((r) => setTimeout(r, 5_000));
    expect(sim.loginsRefused).toBe(1);
    const refusals = lines.filter((l) => l.level === 50 && /refused saw's credentials/.test(String(l.msg)));
    expect(refusals).toHaveLength(1);
    expect(refusals[0]).toMatchObject({ machine: "saw", refusals: 1, retryInMs: 60_000, passwordFile });
    expect(String(refusals[0]!.msg)).toMatch(/next attempt is in 1 min.*or at once when .*password changes/);
    expect(JSON.stringify(lines)).not.toContain("wrong-one");
    expect(messages.some((m) => m.kind === "data")).toBe(false);

    writeFileSync(passwordFile, "right-one\n");
    await waitFor("values with the corrected password", () => messages.some((m) => m.kind === "data"), 20_000);
    expect(session.state).toBe("connected");
    expect(session.health().credentialsRejected).toBe(false);
    expect(sim.loginsRefused).toBe(1);
    expect(JSON.stringify(lines)).not.toContain("right-one");
  });
});

describe("refused credentials", () => {
  it("are told apart from other failures, and waited for 1, 2, 4 … 30 minutes", () => {
    expect(credentialsRejection(new Error("... BadUserAccessDenied (0x801f0000)"))).toBe("BadUserAccessDenied");
    expect(credentialsRejection(new Error("BadIdentityTokenRejected"))).toBe("BadIdentityTokenRejected");
    expect(credentialsRejection(new Error("BadUserSignatureInvalid"))).toBe("BadUserSignatureInvalid");
    expect(credentialsRejection(new Error("connect ECONNREFUSED 127.0.0.1:4840"))).toBeNull();
    expect(credentialsRejection(new Error("BadCertificateUntrusted"))).toBeNull();
    expect([1, 2, 3, 4, 5, 6, 7, 20].map((n) => credentialsBackoffMs(n) / 60_000)).toEqual([1, 2, 4, 8, 16, 30, 30, 30]);
  });
});
