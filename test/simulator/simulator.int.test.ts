import fs from "node:fs/promises";
import path from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  AttributeIds,
  constructEventFilter,
  DataType,
  MessageSecurityMode,
  NodeClass,
  TimestampsToReturn,
  UserTokenType,
  type ClientSession,
  type Variant,
} from "node-opcua-client";
import { isKerfError } from "../../src/errors.ts";
import { SIM_NODES, WOODWORKING_NAMESPACE_URI } from "../../src/simulator/nodes.ts";
import type { Simulator } from "../../src/simulator/server.ts";
import { connect, makeClientPki, sleep, startTestSimulator, tempDir, type TestClientPki } from "./helpers.ts";

let dir: string;
let cleanup: () => Promise<void>;
let sim: Simulator;
let trusted: TestClientPki;
let stranger: TestClientPki;

beforeAll(async () => {
  ({ dir, cleanup } = await tempDir());
  [sim, trusted, stranger] = await Promise.all([
    startTestSimulator(dir, { alarmPeriodMs: 1000, users: [{ username: "operator", password: "s3cret-Passw0rd" }] }),
    makeClientPki(dir, "trusted-client"),
    makeClientPki(dir, "stranger"),
  ]);
  // trust is explicit on both sides
  await trusted.certificateManager.trustCertificate(sim.certificateDer);
  await stranger.certificateManager.trustCertificate(sim.certificateDer);
  await sim.trustClientCertificate(trusted.certificateDer);
});

afterAll(async () => {
  await sim?.stop();
  await trusted?.dispose();
  await stranger?.dispose();
  await cleanup?.();
});

/** Turns `nsu=<uri>;s=x` into a node id the session understands. */
async function resolver(session: ClientSession): Promise<(id: string) => string> {
  const namespaces = await session.readNamespaceArray();
  return (id) => {
    const m = /^nsu=([^;]+);(.*)$/.exec(id);
    if (!m) return id;
    const index = namespaces.indexOf(m[1]!);
    if (index < 0) throw new Error(`namespace ${m[1]} not on server`);
    return `ns=${index};${m[2]}`;
  };
}

describe("simulator certificate", () => {
  it("has our own subject and an applicationUri without the hostname", async () => {
    const { X509Certificate } = await import("node:crypto");
    const cert = new X509Certificate(sim.certificateDer);
    expect(cert.subject).toContain("CN=Kerf Simulator");
    expect(cert.subject).toContain("O=Kerf");
    expect(cert.subject).not.toMatch(/Sterfive/);
    expect(cert.subjectAltName).toContain("DNS:localhost");
    expect(cert.subjectAltName).toContain("IP Address:127.0.0.1");
    expect(sim.applicationUri).toMatch(/^urn:kerf:simulator:[0-9a-f]{12}$/);
    expect(cert.subjectAltName).toContain(`URI:${sim.applicationUri}`);
    expect(sim.endpointUrl).toBe(`opc.tcp://127.0.0.1:${sim.port}`);
    expect(sim.thumbprint).toBe(cert.fingerprint.replaceAll(":", "").toLowerCase());
  });
});

describe("secure connection", () => {
  it("reads identification and spindle speed over SignAndEncrypt / Basic256Sha256", async () => {
    const c = await connect(sim, trusted);
    try {
      const ns = await resolver(c.session);
      const values = await c.session.read(
        [SIM_NODES.manufacturer, SIM_NODES.model, SIM_NODES.serialNumber, SIM_NODES.yearOfConstruction, SIM_NODES.spindleSpeed].map((n) => ({
          nodeId: ns(n),
          attributeId: AttributeIds.Value,
        })),
      );
      for (const v of values) expect(v.statusCode.isGood()).toBe(true);
      const [manufacturer, model, serial, year, spindle] = values.map((v) => v.value as Variant);
      expect(manufacturer!.value.text).toMatch(/Kerf/);
      expect(model!.value.text).toBe("PanelSaw 4200");
      expect(serial!.value).toBe("KS-4200-000815");
      expect(year!.dataType).toBe(DataType.UInt16);
      expect(year!.value).toBe(2023);
      expect(spindle!.dataType).toBe(DataType.Double);
      expect(spindle!.value).toBeGreaterThanOrEqual(0);
      expect(c.client.securityMode).toBe(MessageSecurityMode.SignAndEncrypt);
    } finally {
      await c.close();
    }
  });

  it("offers every node-opcua policy with Sign and SignAndEncrypt, and anonymous, username and X.509 tokens", async () => {
    const c = await connect(sim, trusted);
    try {
      const endpoints = await c.client.getEndpoints();
      const offered = new Set(endpoints.map((e) => `${(e.securityPolicyUri ?? "").split("#")[1]}/${MessageSecurityMode[e.securityMode]}`));
      for (const policy of ["Basic128Rsa15", "Basic256", "Basic256Sha256", "Aes128_Sha256_RsaOaep", "Aes256_Sha256_RsaPss"]) {
        expect(offered).toContain(`${policy}/Sign`);
        expect(offered).toContain(`${policy}/SignAndEncrypt`);
      }
      expect(offered).toContain("None/None");
      const tokens = new Set(endpoints.flatMap((e) => (e.userIdentityTokens ?? []).map((t) => t.tokenType)));
      expect(tokens).toEqual(new Set([UserTokenType.Anonymous, UserTokenType.UserName, UserTokenType.Certificate]));
    } finally {
      await c.close();
    }
  });

  it("refuses a client whose certificate it does not trust, and files it under rejected/", async () => {
    await expect(connect(sim, stranger)).rejects.toThrow();
    const rejected = await fs.readdir(path.join(dir, "server-pki", "rejected"));
    expect(rejected.some((f) => f.includes("stranger"))).toBe(true);
  });

  it("accepts the configured username and refuses a wrong password", async () => {
    const ok = await connect(sim, trusted, { userIdentity: { type: UserTokenType.UserName, userName: "operator", password: "s3cret-Passw0rd" } });
    await ok.close();
    await expect(
      connect(sim, trusted, { userIdentity: { type: UserTokenType.UserName, userName: "operator", password: "wrong" } }),
    ).rejects.toThrow(/BadUserAccessDenied|BadIdentityTokenRejected|BadIdentityTokenInvalid/);
  });
  it("accepts an X.509 user token only once its certificate is trusted for users", async () => {
    const privateKey = await fs.readFile(path.join(stranger.certificateManager.rootDir, "own/private/private_key.pem"), "utf8");
    const userIdentity = { type: UserTokenType.Certificate as const, certificateData: stranger.certificateDer, privateKey };
    await expect(connect(sim, trusted, { userIdentity })).rejects.toThrow(/Bad/);
    await sim.trustUserCertificate(stranger.certificateDer);
    const ok = await connect(sim, trusted, { userIdentity });
    await ok.close();
  });
});

describe("woodworking model", () => {
  it("instantiates WwMachineType from the Woodworking namespace under Objects/Machines", async () => {
    const c = await connect(sim, trusted);
    try {
      const ns = await resolver(c.session);
      const machine = ns(SIM_NODES.machine);
      const [typeRef] = (await c.session.browse({ nodeId: machine, referenceTypeId: "HasTypeDefinition", browseDirection: 0 })).references ?? [];
      expect(typeRef).toBeDefined();
      const namespaces = await c.session.readNamespaceArray();
      expect(namespaces[typeRef!.nodeId.namespace]).toBe(WOODWORKING_NAMESPACE_URI);
      const typeName = await c.session.read({ nodeId: typeRef!.nodeId, attributeId: AttributeIds.BrowseName });
      expect(typeName.value.value.name).toBe("WwMachineType");

      const machines = await c.session.browse({ nodeId: ns(`nsu=http://opcfoundation.org/UA/Machinery/;i=1001`), browseDirection: 0, resultMask: 63 });
      expect(machines.references?.some((r) => r.nodeId.toString() === machine && r.nodeClass === NodeClass.Object)).toBe(true);

      const state = await c.session.read({ nodeId: ns(SIM_NODES.currentState), attributeId: AttributeIds.Value });
      expect([0, 1, 2, 3, 4]).toContain(state.value.value);
      const pieces = await c.session.read({ nodeId: ns(SIM_NODES.absolutePiecesOut), attributeId: AttributeIds.Value });
      expect(pieces.value.dataType).toBe(DataType.UInt64);
    } finally {
      await c.close();
    }
  });

  it("counts machine-on time up, sampled at 100 ms", async () => {
    const c = await connect(sim, trusted);
    try {
      const ns = await resolver(c.session);
      const sub = await c.session.createSubscription2({ requestedPublishingInterval: 100, publishingEnabled: true, maxNotificationsPerPublish: 0 });
      const onTimes: number[] = [];
      const item = await sub.monitor(
        { nodeId: ns(SIM_NODES.absoluteMachineOnTime), attributeId: AttributeIds.Value },
        { samplingInterval: 100, queueSize: 10, discardOldest: true },
        TimestampsToReturn.Both,
      );
      // UInt64 arrives as [high, low]
      item.on("changed", (dv) => {
        const [hi, lo] = dv.value.value as [number, number];
        onTimes.push(hi * 2 ** 32 + lo);
      });
      await sleep(1000);
      await sub.terminate();
      expect(onTimes.length).toBeGreaterThanOrEqual(5);
      for (let i = 1; i < onTimes.length; i++) expect(onTimes[i]).toBeGreaterThan(onTimes[i - 1]!);
      // ms of machine time track wall time within a tick or two
      expect(onTimes.at(-1)! - onTimes[0]!).toBeGreaterThan(400);
    } finally {
      await c.close();
    }
  });
});

describe("alarms", () => {
  it("raises the dust-extraction alarm as an event on the Server object", async () => {
    const c = await connect(sim, trusted);
    try {
      const sub = await c.session.createSubscription2({ requestedPublishingInterval: 100, publishingEnabled: true });
      const filter = constructEventFilter(["EventType", "SourceName", "Message", "Severity", "ActiveState.Id", "ConditionName"]);
      const item = await sub.monitor(
        { nodeId: "i=2253", attributeId: AttributeIds.EventNotifier },
        { samplingInterval: 0, queueSize: 100, filter },
        TimestampsToReturn.Both,
      );
      const events: { message: string; severity: number; active: boolean }[] = [];
      const active = new Promise<void>((resolve) => {
        item.on("changed", (fields: unknown) => {
          const f = fields as Variant[];
          const event = { message: String(f[2]!.value?.text ?? ""), severity: Number(f[3]!.value), active: f[4]!.value === true };
          events.push(event);
          if (event.active) resolve();
        });
      });
      // one dip per 1 s period: active within the period, at most one period plus publishing
      const timeout = sleep(3000).then(() => "timeout");
      expect(await Promise.race([active.then(() => "ok"), timeout])).toBe("ok");
      await sub.terminate();
      const raised = events.find((e) => e.active)!;
      expect(raised.message).toMatch(/Dust extraction airflow low/);
      expect(raised.severity).toBe(700);
    } finally {
      await c.close();
    }
  });
});

describe("startup errors", () => {
  it("reports a port in use as a usage error", async () => {
    const err = await startTestSimulator(path.join(dir, "second"), { port: sim.port }).catch((e: unknown) => e);
    expect(isKerfError(err, "USAGE")).toBe(true);
    expect((err as Error).message).toBe(`cannot listen on 127.0.0.1:${sim.port}: the port is in use; choose another with --port`);
  });
});
