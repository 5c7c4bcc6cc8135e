/**
 * Browsing a server's address space for `kerf browse`: connect with the session's checks, then
 * walk the variables below a node. The CLI turns the result into a mapping-file skeleton.
 */
import {
  AttributeIds,
  BrowseDirection,
  MessageSecurityMode,
  NodeClass,
  NodeId,
  OPCUAClient,
  SecurityPolicy,
  UserTokenType,
  type ClientSession,
  type ExpandedNodeId,
  type ReferenceDescription,
} from "node-opcua-client";
import { KerfError } from "../errors.ts";
import type { Logger } from "../log.ts";
import { checkChannel } from "./session/channel.ts";
import { describeConnectError, endpointContext, securityRefusal } from "./session/connect-errors.ts";
import { selectBest } from "./session/security.ts";
import { resolveMappedNodeId } from "./subscription/nodes.ts";
import { describeConnectFailure, isCertificateFailure } from "./trust/explain.ts";
import type { ClientPki } from "./trust/pki.ts";
import { getEndpoints } from "./trust/probe.ts";
import type { EndpointSpec, SecurityPolicyName } from "./types.ts";

type ConcreteMode = Exclude<EndpointSpec["securityMode"], "best">;
type ProbePki = Pick<ClientPki, "certificateManager" | "certificateFile" | "privateKeyFile" | "applicationUri">;

/** The Objects folder: where browsing starts unless told otherwise. */
export const OBJECTS = "i=85";
const SERVER = "i=2253";
const HAS_PROPERTY = "ns=0;i=46";
const HIERARCHICAL = "i=33";

/** The mode and policy to connect with: the configured ones, or for `best` the strongest the server offers. */
export async function chooseSecurity(spec: EndpointSpec, pki: ProbePki, logger: Logger): Promise<{ mode: ConcreteMode; policy: SecurityPolicyName }> {
  if (spec.securityMode !== "best") return { mode: spec.securityMode, policy: spec.securityPolicy };
  const endpoints = await getEndpoints(spec.endpointUrl, pki, spec.connectTimeoutMs).catch((err: Error) => {
    throw new KerfError("OPCUA_CONNECT", describeConnectError(err, spec), { cause: err, context: endpointContext(spec) });
  });
  const best = selectBest(endpoints, spec.allowDeprecated);
  if (!best) throw securityRefusal(spec, "mode best: the server offers no endpoint Kerf may use");
  if (best.mode === "None") logger.warn("mode best: the server offers mode None only; browsing in clear");
  return best;
}

/**
 * Connects with the same checks as the connector's session: trust store, no downgrade, certificate
 * names, user token. With `explainTrust` (the connector's own trust store) a refused certificate
 * is explained as the session explains it.
 */
export async function openBrowseSession(
  spec: EndpointSpec,
  security: { mode: ConcreteMode; policy: SecurityPolicyName },
  pki: ClientPki,
  options: { explainTrust: boolean; stateDir: string | undefined; logger: Logger },
): Promise<{ client: OPCUAClient; session: ClientSession }> {
  const { mode, policy } = security;
  const client = OPCUAClient.create({
    applicationName: "Kerf",
    applicationUri: pki.applicationUri,
    clientName: "kerf-browse",
    clientCertificateManager: pki.certificateManager,
    certificateFile: pki.certificateFile,
    privateKeyFile: pki.privateKeyFile,
    securityMode: MessageSecurityMode[mode],
    securityPolicy: SecurityPolicy[policy],
    endpointMustExist: true,
    connectionStrategy: { maxRetry: 0 },
    transportTimeout: spec.connectTimeoutMs,
  });
  const fail = async (err: unknown, code: "OPCUA_CONNECT" | "OPCUA_SECURITY"): Promise<never> => {
    await client.disconnect().catch(() => undefined);
    const text = options.explainTrust ? await describeConnectFailure(err, { ...spec, securityMode: mode }, pki, options.stateDir) : describeConnectError(err, spec);
    throw new KerfError(code === "OPCUA_CONNECT" && isCertificateFailure(err) ? "OPCUA_UNTRUSTED_CERT" : code, text, { cause: err, context: endpointContext(spec) });
  };
  try {
    await client.connect(spec.endpointUrl);
  } catch (err) {
    return fail(err, "OPCUA_CONNECT");
  }
  const { refusal } = await checkChannel(client, spec, mode, policy, pki.certificateManager, options.logger);
  if (refusal) return fail(securityRefusal(spec, refusal), "OPCUA_SECURITY");
  try {
    const session = await client.createSession(
      spec.user.type === "username" ? { type: UserTokenType.UserName, userName: spec.user.username, password: spec.user.password } : { type: UserTokenType.Anonymous },
    );
    return { client, session };
  } catch (err) {
    return fail(err, "OPCUA_CONNECT");
  }
}

export interface BrowsedVariable {
  /** Browse names from the root (exclusive) to the variable. */
  path: string[];
  nodeId: string;
  dataType: string;
}

export interface BrowseResult {
  rootName: string;
  variables: BrowsedVariable[];
  truncated: boolean;
  /** There are nodes below the last level browsed: --depth left them out. */
  deeper: boolean;
  skipped: string[];
}

/** Breadth-first over hierarchical references (but not a variable's properties), one Browse call per level and batch. */
export async function browseVariables(session: ClientSession, rootText: string, depth: number, maxNodes: number): Promise<BrowseResult> {
  const namespaceArray = await session.readNamespaceArray();
  const root = resolveMappedNodeId(rootText, namespaceArray);
  const rootRead = await session.read({ nodeId: root, attributeId: AttributeIds.BrowseName });
  if (!rootRead.statusCode.isGood()) throw new KerfError("OPCUA_NODE", `--root ${rootText}: the server has no such node (${rootRead.statusCode.name})`);
  const rootName = String(rootRead.value.value?.name ?? rootText);

  const seen = new Set<string>([root.toString()]);
  const variables: { path: string[]; nodeId: NodeId; variable: boolean }[] = [];
  const skipped: string[] = [];
  const rootClass = await session.read({ nodeId: root, attributeId: AttributeIds.NodeClass });
  let level: { nodeId: NodeId; path: string[]; variable: boolean }[] = [{ nodeId: root, path: [], variable: rootClass.value.value === NodeClass.Variable }];
  let truncated = false;
  for (let d = 1; d <= depth && level.length > 0 && !truncated; d++) {
    const next: typeof level = [];
    for (let i = 0; i < level.length && !truncated; i += 100) {
      const batch = level.slice(i, i + 100);
      const refsPerNode = await browseAll(session, batch.map((b) => b.nodeId));
      batch.forEach((parent, bi) => {
        for (const ref of refsPerNode[bi]!) {
          // A variable's properties (EURange, EngineeringUnits…) describe it; an object's (Identification's
          // Manufacturer, SerialNumber…) are data worth mapping.
          if (parent.variable && ref.referenceTypeId.toString() === HAS_PROPERTY) continue;
          const id = localNodeId(ref.nodeId, namespaceArray);
          if (!id || seen.has(id.toString())) continue;
          seen.add(id.toString());
          const name = ref.browseName.name ?? id.toString();
          // The Server object's diagnostics are rarely machine data; say so instead of listing them.
          if (parent.path.length === 0 && root.toString() === resolveMappedNodeId(OBJECTS, namespaceArray).toString() && id.toString() === resolveMappedNodeId(SERVER, namespaceArray).toString()) {
            skipped.push(`${name} (${SERVER}): browse it with --root ${SERVER}`);
            continue;
          }
          const child = { nodeId: id, path: [...parent.path, name], variable: ref.nodeClass === NodeClass.Variable };
          if (ref.nodeClass === NodeClass.Variable) {
            if (variables.length >= maxNodes) {
              truncated = true;
              return;
            }
            variables.push(child);
          }
          next.push(child);
        }
      });
    }
    level = next;
  }
  // One more level, only to tell whether --depth left nodes out.
  let deeper = false;
  for (let i = 0; i < level.length && !truncated && !deeper; i += 100) {
    const batch = level.slice(i, i + 100);
    const refsPerNode = await browseAll(session, batch.map((b) => b.nodeId));
    deeper = batch.some((parent, bi) =>
      refsPerNode[bi]!.some((ref) => !(parent.variable && ref.referenceTypeId.toString() === HAS_PROPERTY) && !seen.has(localNodeId(ref.nodeId, namespaceArray)?.toString() ?? "")),
    );
  }
  const types = await dataTypes(session, variables.map((v) => v.nodeId));
  return {
    rootName,
    variables: variables.map((v, i) => ({ path: v.path, nodeId: nsuForm(v.nodeId, namespaceArray), dataType: types[i]! })),
    truncated,
    deeper,
    skipped,
  };
}

async function browseAll(session: ClientSession, nodeIds: NodeId[]): Promise<ReferenceDescription[][]> {
  const results = await session.browse(
    nodeIds.map((nodeId) => ({
      nodeId,
      browseDirection: BrowseDirection.Forward,
      referenceTypeId: HIERARCHICAL,
      includeSubtypes: true,
      nodeClassMask: NodeClass.Object | NodeClass.Variable,
      resultMask: 0x3f,
    })),
  );
  const out: ReferenceDescription[][] = [];
  for (const r of results) {
    const refs = [...(r.references ?? [])];
    let cp = r.continuationPoint;
    while (cp && cp.length > 0) {
      const more = await session.browseNext(cp, false);
      refs.push(...(more.references ?? []));
      cp = more.continuationPoint;
    }
    out.push(refs);
  }
  return out;
}

/** "Double", "Double[]", or the data type's node id when the server does not name it. */
async function dataTypes(session: ClientSession, nodeIds: NodeId[]): Promise<string[]> {
  const out: { type: NodeId | null; rank: number }[] = [];
  for (let i = 0; i < nodeIds.length; i += 500) {
    const batch = nodeIds.slice(i, i + 500);
    const read = await session.read(batch.flatMap((nodeId) => [{ nodeId, attributeId: AttributeIds.DataType }, { nodeId, attributeId: AttributeIds.ValueRank }]));
    for (let j = 0; j < batch.length; j++) {
      const t = read[2 * j]!;
      const r = read[2 * j + 1]!;
      out.push({ type: t.statusCode.isGood() ? (t.value.value as NodeId) : null, rank: r.statusCode.isGood() ? Number(r.value.value) : -1 });
    }
  }
  const distinct = [...new Map(out.filter((o) => o.type).map((o) => [o.type!.toString(), o.type!])).values()];
  const names = new Map<string, string>();
  for (let i = 0; i < distinct.length; i += 500) {
    const batch = distinct.slice(i, i + 500);
    const read = await session.read(batch.map((nodeId) => ({ nodeId, attributeId: AttributeIds.BrowseName })));
    batch.forEach((id, j) => names.set(id.toString(), read[j]!.statusCode.isGood() ? String(read[j]!.value.value?.name ?? id.toString()) : id.toString()));
  }
  return out.map((o) => {
    const name = o.type ? (names.get(o.type.toString()) ?? o.type.toString()) : "unknown type";
    return o.rank >= 0 || o.rank === -3 ? `${name}[]${o.rank === -3 ? " or scalar" : ""}` : name;
  });
}

function localNodeId(id: ExpandedNodeId, namespaceArray: readonly string[]): NodeId | undefined {
  if (id.serverIndex) return undefined; // on another server
  if (id.namespaceUri) {
    const ns = namespaceArray.indexOf(id.namespaceUri);
    if (ns < 0) return undefined;
    return resolveMappedNodeId(`ns=${ns};${identifierPart(id)}`, namespaceArray);
  }
  return id;
}

function identifierPart(id: NodeId): string {
  switch (id.identifierType) {
    case NodeId.NodeIdType.NUMERIC:
      return `i=${id.value as number}`;
    case NodeId.NodeIdType.STRING:
      return `s=${id.value as string}`;
    case NodeId.NodeIdType.GUID:
      return `g=${String(id.value).toLowerCase()}`;
    default:
      return `b=${(id.value as Buffer).toString("base64")}`;
  }
}

/** The mapping's preferred form: namespace by URI, since indexes may differ after a server restart. */
function nsuForm(id: NodeId, namespaceArray: readonly string[]): string {
  if (id.namespace === 0) return identifierPart(id);
  const uri = namespaceArray[id.namespace];
  return uri ? `nsu=${uri};${identifierPart(id)}` : `ns=${id.namespace};${identifierPart(id)}`;
}
