import { Writable } from "node:stream";
import { pino } from "pino";
import { EndpointDescription, MessageSecurityMode, SecurityPolicy, UserTokenPolicy, UserTokenType } from "node-opcua-client";
import { afterEach, describe, expect, it } from "vitest";
import { generateKeyPair, privateKeyToPem } from "../../../src/certs/x509.ts";
import { silentLogger } from "../../../src/log.ts";
import { openBrowseSession } from "../../../src/opcua/browse.ts";
import type { ConnectorPki } from "../../../src/opcua/trust/pki.ts";
import { checkNoDowngrade, checkUserToken, selectBest } from "../../../src/opcua/session/security.ts";
import { MachineSession } from "../../../src/opcua/session/session.ts";
import type { EndpointSpec } from "../../../src/opcua/types.ts";
import { loadNodeId } from "../../../src/simulator/nodes.ts";
import type { Simulator, SimulatorOptions } from "../../../src/simulator/server.ts";
import type { Message } from "../../../src/message.ts";
import { tempDir, waitFor } from "../../helpers/env.ts";
import { endpointSpec, simulatorAndPki } from "../../helpers/opcua.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function setup(simOptions: Partial<SimulatorOptions> = {}, trustServer = true): Promise<{ sim: Simulator; pki: ConnectorPki }> {
  const tmp = await tempDir();
  cleanups.push(tmp.cleanup);
  return simulatorAndPki(tmp.dir, cleanups, { load: { count: 1, periodMs: 100 }, ...simOptions }, trustServer);
}

function spec(sim: Simulator, over: Partial<EndpointSpec>): EndpointSpec {
  return endpointSpec(sim, {
    groups: [{ name: "g", publishingInterval: 100, nodes: [{ key: "c", node: loadNodeId(0), samplingInterval: 0, queueSize: 10, discardOldest: true }] }],
    ...over,
  });
}

function run(s: EndpointSpec, pki: ConnectorPki, logger = silentLogger()) {
  const messages: Message[] = [];
  const session = new MachineSession({ spec: s, pki, sink: { write: (m) => messages.push(...m) }, logger, backoff: { initialMs: 100, maxMs: 300 } });
  cleanups.push(() => session.stop());
  session.start();
  return { session, messages, hasData: () => messages.some((m) => m.kind === "data") };
}

function capture() {
  const lines: string[] = [];
  const logger = pino({ level: "info" }, new Writable({ write: (chunk, _e, cb) => (lines.push(String(chunk)), cb()) }));
  return { logger, lines };
}

describe("OPC UA security levels", () => {
  it("never falls back to a weaker endpoint than configured (downgrade refused)", async () => {
    // A server that only offers None and Sign: SignAndEncrypt must not quietly become Sign.
    const { sim, pki } = await setup({ securityModes: [MessageSecurityMode.None, MessageSecurityMode.Sign], securityPolicies: [SecurityPolicy.None, SecurityPolicy.Basic256Sha256] });
    const r = run(spec(sim, {}), pki);
    const error = await waitFor("a refusal", () => r.session.health().lastError ?? undefined, 15_000);
    expect(error).toMatch(/SignAndEncrypt/);
    await new Promise((res) => setTimeout(res, 500));
    expect(r.hasData()).toBe(false);
    expect(r.session.state).not.toBe("connected");
  });

  it("mode best picks the strongest policy the server offers, not the server's order", async () => {
    const { sim, pki } = await setup({
      securityModes: [MessageSecurityMode.Sign, MessageSecurityMode.SignAndEncrypt],
      securityPolicies: [SecurityPolicy.Aes256_Sha256_RsaPss, SecurityPolicy.Basic128Rsa15, SecurityPolicy.Aes128_Sha256_RsaOaep, SecurityPolicy.Basic256Sha256],
    });
    const r = run(spec(sim, { securityMode: "best" }), pki);
    await waitFor("data", r.hasData, 15_000);
    expect(r.session.security).toEqual({ mode: "SignAndEncrypt", policy: "Aes256_Sha256_RsaPss" });
  });

  it("a deprecated policy is refused unless allowed, and logs a warning whenever it is used", async () => {
    const { sim, pki } = await setup({ securityModes: [MessageSecurityMode.SignAndEncrypt], securityPolicies: [SecurityPolicy.Basic128Rsa15] });
    // mode best never picks a deprecated policy on its own.
    const refused = run(spec(sim, { securityMode: "best" }), pki);
    expect(await waitFor("a refusal", () => refused.session.health().lastError ?? undefined, 15_000)).toMatch(/allowDeprecated/);
    expect(refused.session.health().lastErrorCode).toBe("OPCUA_SECURITY");
    await refused.session.stop();

    const { logger, lines } = capture();
    const allowed = run(spec(sim, { securityPolicy: "Basic128Rsa15", allowDeprecated: true }), pki, logger);
    await waitFor("data", allowed.hasData, 15_000);
    expect(lines.some((l) => /"level":40/.test(l) && /deprecated security policy Basic128Rsa15/.test(l))).toBe(true);
  });

  it("a wrong password gives a clear BadUserAccessDenied message, and the password is never logged", async () => {
    const { sim, pki } = await setup({ users: [{ username: "operator", password: "right-one" }] });
    const { logger, lines } = capture();
    const r = run(spec(sim, { user: { type: "username", username: "operator", password: "wrong-password-123" } }), pki, logger);
    const error = await waitFor("a refusal", () => r.session.health().lastError ?? undefined, 15_000);
    expect(error).toMatch(/BadUserAccessDenied/);
    expect(error).toMatch(/user name and password/);
    expect(lines.join("\n")).not.toContain("wrong-password-123");
  });

  it("over mode None, a password is encrypted only for a trusted server certificate", async () => {
    const { sim, pki } = await setup({ users: [{ username: "operator", password: "right-one" }] }, false);
    const user = { type: "username" as const, username: "operator", password: "right-one" };
    const refused = run(spec(sim, { securityMode: "None", securityPolicy: "None", user }), pki);
    expect(await waitFor("a refusal", () => refused.session.health().lastError ?? undefined, 15_000)).toMatch(/not trusted/);
    expect(refused.hasData()).toBe(false);
    await refused.session.stop();

    await pki.certificateManager.trustCertificate(sim.certificateDer);
    const accepted = run(spec(sim, { securityMode: "None", securityPolicy: "None", user }), pki);
    await waitFor("data", accepted.hasData, 15_000);
  });

  it("kerf browse over mode None gives a password only to a trusted server certificate, as the session does", async () => {
    const { sim, pki } = await setup({ users: [{ username: "operator", password: "right-one" }] }, false);
    const user = { type: "username" as const, username: "operator", password: "right-one" };
    const open = () => openBrowseSession(spec(sim, { securityMode: "None", securityPolicy: "None", user }), { mode: "None", policy: "None" }, pki, { explainTrust: false, stateDir: undefined, logger: silentLogger() });
    await expect(open()).rejects.toMatchObject({ code: "OPCUA_SECURITY", message: expect.stringMatching(/not trusted/) });

    await pki.certificateManager.trustCertificate(sim.certificateDer);
    const { client, session } = await open();
    await session.close();
    await client.disconnect();
  });

  it("an X.509 user key that is not RSA is refused with a plain reason", async () => {
    const { sim, pki } = await setup();
    const ec = await generateKeyPair("ec");
    const r = run(spec(sim, { user: { type: "certificate", certificatePem: "-----BEGIN CERTIFICATE-----\nAA==\n-----END CERTIFICATE-----\n", privateKeyPem: await privateKeyToPem(ec.privateKey) } }), pki);
    const error = await waitFor("a refusal", () => r.session.health().lastError ?? undefined, 15_000);
    expect(error).toMatch(/EC.*RSA/);
  });
});

describe("password protection decision", () => {
  const endpoint = (mode: MessageSecurityMode, channelPolicy: string, tokenPolicy: string) =>
    new EndpointDescription({
      securityMode: mode,
      securityPolicyUri: channelPolicy,
      userIdentityTokens: [new UserTokenPolicy({ policyId: "u", tokenType: UserTokenType.UserName, securityPolicyUri: tokenPolicy })],
    });
  const user = { type: "username" as const, username: "u", password: "p" };

  it("refuses a password that neither the channel nor the token policy encrypts", () => {
    expect(checkUserToken(endpoint(MessageSecurityMode.None, SecurityPolicy.None, ""), user)).toMatch(/in clear/);
    expect(checkUserToken(endpoint(MessageSecurityMode.None, SecurityPolicy.None, SecurityPolicy.None), user)).toMatch(/in clear/);
    expect(checkUserToken(endpoint(MessageSecurityMode.Sign, SecurityPolicy.Basic256Sha256, SecurityPolicy.None), user)).toMatch(/in clear/);
  });

  it("accepts it when the token policy or the channel encrypts", () => {
    expect(checkUserToken(endpoint(MessageSecurityMode.None, SecurityPolicy.None, SecurityPolicy.Basic256Sha256), user)).toBeUndefined();
    expect(checkUserToken(endpoint(MessageSecurityMode.Sign, SecurityPolicy.Basic256Sha256, ""), user)).toBeUndefined();
    expect(checkUserToken(endpoint(MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Basic256Sha256, SecurityPolicy.None), user)).toBeUndefined();
  });

  it("refuses a channel that came up weaker than configured, in mode or in policy, and takes the one configured", () => {
    const channel = (mode: MessageSecurityMode, policy: string) => ({ securityMode: mode, securityPolicy: policy });
    expect(checkNoDowngrade(channel(MessageSecurityMode.Sign, SecurityPolicy.Basic256Sha256), "SignAndEncrypt", "Basic256Sha256")).toMatch(/came up as Sign\/Basic256Sha256 but SignAndEncrypt\/Basic256Sha256.*refusing the weaker channel/);
    expect(checkNoDowngrade(channel(MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Basic128Rsa15), "SignAndEncrypt", "Aes256_Sha256_RsaPss")).toMatch(/came up as SignAndEncrypt\/Basic128Rsa15/);
    expect(checkNoDowngrade(channel(MessageSecurityMode.None, SecurityPolicy.None), "Sign", "Basic256Sha256")).toMatch(/came up as None\/None/);
    expect(checkNoDowngrade(channel(MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Aes256_Sha256_RsaPss), "SignAndEncrypt", "Aes256_Sha256_RsaPss")).toBeUndefined();
  });

  it("ranks by mode, then policy strength", () => {
    const e = (mode: MessageSecurityMode, policy: string) => new EndpointDescription({ securityMode: mode, securityPolicyUri: policy });
    const list = [e(MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Basic256), e(MessageSecurityMode.Sign, SecurityPolicy.Aes256_Sha256_RsaPss), e(MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Aes128_Sha256_RsaOaep)];
    expect(selectBest(list, false)).toEqual({ mode: "SignAndEncrypt", policy: "Aes128_Sha256_RsaOaep" });
    expect(selectBest([e(MessageSecurityMode.SignAndEncrypt, SecurityPolicy.Basic256)], false)).toBeUndefined();
  });
});
