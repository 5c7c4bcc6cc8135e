import type { AddressSpace, Namespace, UADataType, UAObject, UAVariable } from "node-opcua-address-space";
import { OpaqueStructure } from "node-opcua-extension-object";
import type { NodeId } from "node-opcua-nodeid";
import type { OPCUAServer } from "node-opcua-server";
import { StatusCodes } from "node-opcua-status-code";
import { DataType, Variant, VariantArrayType } from "node-opcua-variant";
import type { Logger } from "../log.ts";
import { ROGUE_SIZES } from "./nodes.ts";
import { nested, renewEvery } from "./rogue.ts";

export interface RunningRogueDecoding {
  /** Makes `server` leave every Read that touches the RogueHanging DataType unanswered. */
  hangReads(server: OPCUAServer): void;
  stop(): void;
}

/**
 * Values that a client's decoder has to survive (ids in `ROGUE_DECODING_NODES`), under
 * Objects/Rogue/Decoding:
 * - ProtoFields: a structure of a server-defined type whose fields are named `__proto__`,
 *   `constructor` and `prototype`;
 * - HangingType: a structure whose type the client must learn from the server, which never
 *   answers a Read about it (the client's request times out, or waits for ever);
 * - OverNested: Variants nested deeper than node-opcua decodes (128), so the whole publish
 *   response that carries it fails to decode;
 * - ManyDimensions: a one-element matrix with 1,048,576 dimensions of 1.
 * The structures are served as the server would encode them (an ExtensionObject with the
 * type's binary encoding id and its body), not built from the type: node-opcua itself refuses
 * such field names.
 */
export function buildRogueDecoding(addressSpace: AddressSpace, ns: Namespace, options: { periodMs?: number }, logger: Logger): RunningRogueDecoding {
  // under Objects/Rogue when rogue.ts has made it
  const parent = addressSpace.findNode(`ns=${ns.index};s=Rogue`) ?? addressSpace.rootFolder.objects;
  const folder = ns.addFolder(parent as UAObject, { nodeId: "s=Rogue.Decoding", browseName: "Decoding" });
  const add = (name: string, dataType: string, value: Variant, valueRank = -1): UAVariable =>
    ns.addVariable({ nodeId: `s=Rogue.Decoding.${name}`, browseName: name, organizedBy: folder, dataType, valueRank, minimumSamplingInterval: 0, value });

  const proto = structureType(addressSpace, ns, "RogueProtoFields", [
    { name: "__proto__", dataType: DataType.String },
    { name: "constructor", dataType: DataType.String },
    { name: "prototype", dataType: DataType.Int32 },
  ]);
  // declared as Structure: node-opcua's address space checks a value against its own class for
  // the variable's DataType, which it cannot build for these types either
  add("ProtoFields", "Structure", proto.value([string("p"), string("c"), int32(5)]));

  const hanging = structureType(addressSpace, ns, "RogueHanging", [{ name: "Value", dataType: DataType.Int32 }]);
  const hangingVariable = add("HangingType", "Structure", hanging.value([int32(0)]));

  const overNested = add("OverNested", "BaseDataType", nested(ROGUE_SIZES.overNesting, 0), -2);
  add(
    "ManyDimensions",
    "UInt32",
    new Variant({ dataType: DataType.UInt32, arrayType: VariantArrayType.Matrix, dimensions: new Array<number>(ROGUE_SIZES.matrixDimensions).fill(1), value: new Uint32Array([7]) }),
    -2,
  );

  const stop = renewEvery(options.periodMs, logger, (round, now) => {
    overNested.setValueFromSource(nested(ROGUE_SIZES.overNesting, round), StatusCodes.Good, now);
    hangingVariable.setValueFromSource(hanging.value([int32(round)]), StatusCodes.Good, now);
  });

  const hangingId = hanging.type.nodeId.toString();
  return {
    hangReads(server) {
      // OPCUAServer dispatches each request to `_on_<RequestName>`; an own property wins.
      const target = server as unknown as { _on_ReadRequest: (message: { request: { nodesToRead?: { nodeId: { toString(): string } }[] } }, channel: unknown) => void };
      const answer = target._on_ReadRequest.bind(server);
      target._on_ReadRequest = (message, channel) => {
        if (message.request.nodesToRead?.some((n) => n.nodeId.toString() === hangingId)) return;
        answer(message, channel);
      };
    },
    stop,
  };
}

interface Field {
  name: string;
  dataType: DataType.String | DataType.Int32;
}

/** A Structure subtype with a Default Binary encoding, and values of it as encoded bodies. */
function structureType(addressSpace: AddressSpace, ns: Namespace, name: string, fields: Field[]): { type: UADataType; value: (body: Buffer[]) => Variant } {
  const type = ns.createDataType({
    nodeId: `s=${name}`,
    browseName: name,
    isAbstract: false,
    subtypeOf: "Structure",
    partialDefinition: fields.map((f) => ({ name: f.name, dataType: addressSpace.findDataType(DataType[f.dataType])!.nodeId, valueRank: -1 })),
  });
  const encoding = ns.addObject({ nodeId: `s=${name}.DefaultBinary`, browseName: { name: "Default Binary", namespaceIndex: 0 }, typeDefinition: "DataTypeEncodingType" });
  type.addReference({ referenceType: "HasEncoding", isForward: true, nodeId: encoding.nodeId });
  return {
    type,
    value: (body) => new Variant({ dataType: DataType.ExtensionObject, value: new EncodedStructure(encoding.nodeId, Buffer.concat(body)) }),
  };
}

/**
 * An ExtensionObject as it travels: its encoding's id and its body, which node-opcua's encoder
 * writes as they are. node-opcua copies a value it stores as `new value.constructor(value)`,
 * which its own OpaqueStructure takes for (nodeId, buffer) and so loses the id; this one copies.
 */
class EncodedStructure extends OpaqueStructure {
  constructor(nodeId: NodeId | OpaqueStructure, buffer?: Buffer) {
    if (nodeId instanceof OpaqueStructure) super(nodeId.nodeId, nodeId.buffer);
    else super(nodeId, buffer!);
  }
}

function string(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  const length = Buffer.alloc(4);
  length.writeInt32LE(bytes.length);
  return Buffer.concat([length, bytes]);
}

function int32(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeInt32LE(n);
  return b;
}
