/**
 * Hostile text from a rogue server, through the whole pipeline: OPC UA session → durable
 * buffer → mTLS uplink → devcloud. It must arrive as data, byte for byte, JSON-escaped and
 * never interpreted, and values over the limits must arrive as marked nulls.
 */
import path from "node:path";
import { DatabaseSync } from "node:sqlite";
import { DataType, VariantArrayType } from "node-opcua-client";
import { afterAll, describe, expect, it } from "vitest";
import { startDevCloud } from "../../src/devcloud/server.ts";
import { silentLogger } from "../../src/log.ts";
import { BAD_ENCODING_LIMITS_EXCEEDED, encodeBounded } from "../../src/opcua/subscription/encode.ts";
import { MachineSession } from "../../src/opcua/session/session.ts";
import { ROGUE_BAD_UTF8_BYTES, ROGUE_HTML, ROGUE_PROTO_JSON } from "../../src/simulator/nodes.ts";
import { tempDir, waitFor } from "../helpers/env.ts";
import { clientTransport, newSender, openBuffer, runCleanups, type Cleanups } from "../uplink/helpers.ts";
import { ROGUE_KEYS, rogueSpec, startRogueSetup } from "./helpers.ts";

const cleanups: Cleanups = [];
afterAll(() => runCleanups(cleanups));

describe("rogue values in the cloud", () => {
  it("reach the devcloud store JSON-escaped, byte for byte, and pollute nothing", async () => {
    const tmp = await tempDir("kerf-rogue-cloud-");
    cleanups.push(tmp.cleanup);
    const cloud = await startDevCloud({ dir: path.join(tmp.dir, "cloud"), logger: silentLogger(), requireTokens: false });
    cleanups.push(() => cloud.stop());
    const buffer = openBuffer(tmp.dir, 64 * 1024 * 1024, cleanups);
    const { transport } = await clientTransport(cloud.ca, [cloud.pin], cleanups);
    const sender = newSender(
      { store: buffer, transport, url: cloud.url, concurrency: 2, requestTimeoutMs: 5000, retry: { initialDelayMs: 20, maxDelayMs: 200 }, pollIntervalMs: 50 },
      cleanups,
    );
    sender.start();

    // straight from the OPC UA session into the buffer, as the agent does
    const setup = await startRogueSetup(tmp.dir, { periodMs: 0 });
    cleanups.push(setup.stop);
    const session = new MachineSession({ spec: rogueSpec(setup.sim, "rogue"), pki: setup.pki, sink: { write: (m) => void buffer.append(m) }, logger: silentLogger() });
    cleanups.push(() => session.stop());
    session.start();

    // what no OPC UA decoder yields but any JS value may hold: lone surrogates and own __proto__ keys
    const lone = "lone \ud800 and \udfff";
    const protoObject = encodeBounded({ dataType: DataType.ExtensionObject, arrayType: VariantArrayType.Scalar, value: JSON.parse(ROGUE_PROTO_JSON) } as never);
    expect(protoObject.ok).toBe(true);
    const t = new Date().toISOString();
    buffer.append([{ kind: "data", machine: "direct", items: [{ key: "lone", v: lone, q: 0, t }, { key: "proto", v: (protoObject as { v: unknown }).v, q: 0, t }] }]);

    const stored = () => {
      const db = new DatabaseSync(path.join(tmp.dir, "cloud", "devcloud.db"), { readOnly: true });
      try {
        const rows = db.prepare("SELECT machine, key, v, q FROM items").all() as { machine: string; key: string; v: string; q: number }[];
        return new Map(rows.map((r) => [`${r.machine}/${r.key}`, r]));
      } finally {
        db.close();
      }
    };
    const expected = [...Object.values(ROGUE_KEYS).map((k) => `rogue/${k}`), "direct/lone", "direct/proto"];
    const rows = await waitFor("every value in the devcloud", () => {
      const r = stored();
      return expected.every((k) => r.has(k)) && r;
    }, 30_000);
    const row = (key: string) => rows.get(`rogue/${key}`)!;

    // stored text is exactly JSON.stringify of what the server sent: escaped, not interpreted
    expect(row(ROGUE_KEYS.html).v).toBe(JSON.stringify(ROGUE_HTML));
    expect(row(ROGUE_KEYS.html).v).toContain("<script>alert(1)</script>");
    expect(row(ROGUE_KEYS.protoKeys).v).toBe(JSON.stringify(ROGUE_PROTO_JSON));
    expect(row(ROGUE_KEYS.badUtf8Bytes).v).toBe(JSON.stringify(Buffer.from(ROGUE_BAD_UTF8_BYTES).toString("base64")));
    expect(JSON.parse(row(ROGUE_KEYS.badUtf8).v)).toMatch(/^lone lead \ufffd, lone trail \ufffd, after a letter é\ufffd/);
    expect(cloud.store.latest("rogue")[ROGUE_KEYS.html]!.v).toBe(ROGUE_HTML);

    // over the limits: null, with the status saying why
    for (const key of [ROGUE_KEYS.hugeString, ROGUE_KEYS.hugeArray, ROGUE_KEYS.deepNested]) expect(row(key), key).toMatchObject({ v: "null", q: BAD_ENCODING_LIMITS_EXCEEDED });

    // lone surrogates travel as JSON escapes and come back unchanged
    expect(rows.get("direct/lone")!.v).toBe('"lone \\ud800 and \\udfff"');
    expect(cloud.store.latest("direct").lone!.v).toBe(lone);
    // a structure's __proto__ key is kept as a key through buffer, uplink, validation and store
    expect(rows.get("direct/proto")!.v).toBe(ROGUE_PROTO_JSON);
    expect(({} as Record<string, unknown>).polluted).toBeUndefined();
    expect(cloud.store.counts().duplicateItems).toBe(0);
  });
});
