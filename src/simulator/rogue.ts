import type { AddressSpace, Namespace, UAVariable } from "node-opcua-address-space";
import { StatusCodes } from "node-opcua-status-code";
import { DataType, Variant, VariantArrayType } from "node-opcua-variant";
import type { Logger } from "../log.ts";
import { ROGUE_BAD_UTF8, ROGUE_BAD_UTF8_BYTES, ROGUE_HTML, ROGUE_PROTO_JSON, ROGUE_SIZES } from "./nodes.ts";

export interface RogueOptions {
  /**
   * When set, the huge and deep values change every period, so a client gets them again and
   * again (memory must stay flat, not just survive one); default 0: they never change.
   */
  periodMs?: number;
}

export interface RunningRogue {
  stop(): void;
}

/**
 * The rogue mode's variables under Objects/Rogue (ids in `ROGUE_NODES`). They cost the
 * simulator about 35 MB: the 10 MiB and 20 MiB strings and the 4 MB array.
 */
export function buildRogue(addressSpace: AddressSpace, ns: Namespace, options: RogueOptions, logger: Logger): RunningRogue {
  const folder = ns.addFolder(addressSpace.rootFolder.objects, { nodeId: "s=Rogue", browseName: "Rogue" });
  const add = (name: string, dataType: string, value: Variant, valueRank = -1): UAVariable =>
    ns.addVariable({ nodeId: `s=Rogue.${name}`, browseName: name, organizedBy: folder, dataType, valueRank, minimumSamplingInterval: 0, value });

  const hugeString = add("HugeString", "String", hugeStringValue(0));
  const hugeArray = add("HugeArray", "UInt32", hugeArrayValue(0), 1);
  const deepNested = add("DeepNested", "BaseDataType", nested(ROGUE_SIZES.deepNesting, 0));
  add("BadUtf8", "String", new Variant({ dataType: DataType.String, value: ROGUE_BAD_UTF8 }));
  add("BadUtf8Bytes", "ByteString", new Variant({ dataType: DataType.ByteString, value: Buffer.from(ROGUE_BAD_UTF8_BYTES) }));
  add("ProtoKeys", "String", new Variant({ dataType: DataType.String, value: ROGUE_PROTO_JSON }));
  add("Html", "String", new Variant({ dataType: DataType.String, value: ROGUE_HTML }));
  add("OverTransport", "String", new Variant({ dataType: DataType.String, value: "y".repeat(ROGUE_SIZES.overTransportChars) }));

  const stop = renewEvery(options.periodMs, logger, (round, now) => {
    hugeString.setValueFromSource(hugeStringValue(round), StatusCodes.Good, now);
    hugeArray.setValueFromSource(hugeArrayValue(round), StatusCodes.Good, now);
    deepNested.setValueFromSource(nested(ROGUE_SIZES.deepNesting, round), StatusCodes.Good, now);
  });
  logger.warn({ periodMs: options.periodMs ?? 0 }, "rogue mode: Objects/Rogue serves hostile values (huge, deep, malformed, script; undecodable under Rogue/Decoding)");
  return { stop };
}

/** Calls `update` with the next round every `periodMs` (none when unset or 0); returns what stops it. */
export function renewEvery(periodMs: number | undefined, logger: Logger, update: (round: number, now: Date) => void): () => void {
  if (!periodMs || periodMs <= 0) return () => undefined;
  let round = 0;
  const timer = setInterval(() => {
    round++;
    try {
      update(round, new Date());
    } catch (err) {
      logger.error({ err }, "rogue values update failed");
    }
  }, periodMs);
  timer.unref();
  return () => clearInterval(timer);
}

function hugeStringValue(round: number): Variant {
  // a fresh string each round, so that the server sees a change
  return new Variant({ dataType: DataType.String, value: `${round}:`.padEnd(ROGUE_SIZES.hugeStringChars, "x") });
}

function hugeArrayValue(round: number): Variant {
  // a new array each round: node-opcua compares with the previous value, which an in-place change would defeat
  const list = new Uint32Array(ROGUE_SIZES.hugeArrayLength).fill(round);
  return new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Array, value: list });
}

/** An Int32 inside `depth` single-element Variant arrays. */
export function nested(depth: number, bottom: number): Variant {
  let v = new Variant({ dataType: DataType.Int32, value: bottom });
  for (let i = 0; i < depth; i++) v = new Variant({ dataType: DataType.Variant, arrayType: VariantArrayType.Array, value: [v] });
  return v;
}
