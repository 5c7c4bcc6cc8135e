/**
 * The OPC UA side of the actions read, browse, write and call, run on a machine's live session
 * (MachineSession.operate). Values the policy typed (policy.ts) become node-opcua Variants here;
 * an OPC UA Bad status becomes a typed result: bad_request for what the server refuses about the
 * arguments, failed for anything else.
 */
import { AttributeIds, BrowseDirection, DataType, type ClientSession, type NodeId, type Variant, type VariantOptions } from "node-opcua-client";
import { encodeVariant } from "../opcua/subscription/encode.ts";
import { resolveMappedNodeId } from "../opcua/subscription/nodes.ts";
import type { ActionArgs } from "./actions.ts";
import type { CommandResult } from "./gate.ts";
import type { TypedValue } from "./policy.ts";

/** Status codes that say the arguments (node, type, value, access) were wrong, not the machine. */
const BAD_REQUEST = new Set([
  "BadNodeIdUnknown",
  "BadNodeIdInvalid",
  "BadTypeMismatch",
  "BadNotWritable",
  "BadUserAccessDenied",
  "BadOutOfRange",
  "BadAttributeIdInvalid",
  "BadArgumentsMissing",
  "BadTooManyArguments",
  "BadInvalidArgument",
  "BadMethodInvalid",
  "BadNotExecutable",
]);

type Ns = readonly string[];

export async function readNodes(session: ClientSession, ns: Ns, args: ActionArgs["read"]): Promise<CommandResult> {
  const ids = args.nodes.map((n) => resolveMappedNodeId(n, ns));
  const values = await session.read(ids.map((nodeId) => ({ nodeId, attributeId: AttributeIds.Value })));
  return {
    state: "succeeded",
    data: values.map((dv, i) => ({ node: args.nodes[i], status: dv.statusCode.name, value: dv.statusCode.isGood() ? encodeVariant(dv.value) : null, t: dv.sourceTimestamp?.toISOString() ?? null })),
  };
}

export async function browseNodes(session: ClientSession, ns: Ns, args: ActionArgs["browse"]): Promise<CommandResult> {
  const depth = args.depth ?? 1;
  const walk = async (nodeId: NodeId | string, level: number): Promise<unknown[]> => {
    const result = await session.browse({ nodeId, browseDirection: BrowseDirection.Forward, referenceTypeId: "HierarchicalReferences", includeSubtypes: true, resultMask: 63 });
    if (!result.statusCode.isGood()) throw Object.assign(new Error(`browse of ${String(nodeId)}: ${result.statusCode.name}`), { status: result.statusCode.name });
    const out: unknown[] = [];
    for (const r of result.references ?? []) {
      const child = { node: r.nodeId.toString(), browseName: r.browseName.toString(), nodeClass: r.nodeClass, ...(level < depth ? { children: await walk(r.nodeId, level + 1) } : {}) };
      out.push(child);
    }
    return out;
  };
  const start = args.node ? resolveMappedNodeId(args.node, ns) : "i=85";
  return { state: "succeeded", data: { node: args.node ?? "i=85", children: await walk(start, 1) } };
}

export async function writeNode(session: ClientSession, ns: Ns, args: ActionArgs["write"], value: TypedValue): Promise<CommandResult> {
  const status = await session.write({ nodeId: resolveMappedNodeId(args.node, ns), attributeId: AttributeIds.Value, value: { value: variant(value) } });
  return status.isGood() ? { state: "succeeded", code: status.name } : { state: BAD_REQUEST.has(status.name) ? "bad_request" : "failed", code: status.name, reason: `the server answered ${status.name} to the write of ${args.node}` };
}

export async function callMethod(session: ClientSession, ns: Ns, args: ActionArgs["call"], inputs: TypedValue[]): Promise<CommandResult> {
  const result = await session.call({ objectId: resolveMappedNodeId(args.object, ns), methodId: resolveMappedNodeId(args.method, ns), inputArguments: inputs.map(variant) });
  const status = result.statusCode;
  if (!status.isGood()) return { state: BAD_REQUEST.has(status.name) ? "bad_request" : "failed", code: status.name, reason: `the server answered ${status.name} to the call of ${args.method}` };
  return { state: "succeeded", code: status.name, data: { outputs: (result.outputArguments ?? []).map((v: Variant) => encodeVariant(v)) } };
}

/** The Variant for a value the policy typed (bigint for the 64-bit integers, Date for DateTime). */
function variant(v: TypedValue): VariantOptions {
  if (v.type === "Int64" || v.type === "UInt64") {
    // node-opcua carries 64-bit integers as [high, low] 32-bit words
    const n = BigInt.asUintN(64, v.value as bigint);
    return { dataType: DataType[v.type], value: [Number(n >> 32n), Number(n & 0xffffffffn)] };
  }
  return { dataType: DataType[v.type], value: v.value };
}

/** A thrown OPC UA service error as a result (the session broke, a timeout). */
export function failure(err: unknown): CommandResult {
  const e = err as { code?: string; status?: string; message?: string };
  const code = e.status ?? e.code ?? "ERROR";
  return { state: BAD_REQUEST.has(code) || e.code === "OPCUA_NODE" ? "bad_request" : "failed", code, reason: e.message ?? String(err) };
}
