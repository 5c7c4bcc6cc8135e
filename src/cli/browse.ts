import { readFile } from "node:fs/promises";
import path from "node:path";
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
import { createLogger, type Logger } from "../log.ts";
import { DATA_POINT_KEY, MACHINE_ID, SECURITY_MODE_CHOICES, SECURITY_POLICIES } from "../config/schema.ts";
import { checkServerCertificate } from "../opcua/trust/cert-checks.ts";
import { describeConnectError } from "../opcua/session/connect-errors.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { resolveMappedNodeId } from "../opcua/subscription/nodes.ts";
import { checkNoDowngrade, checkUserToken, DEPRECATED, selectBest } from "../opcua/session/security.ts";
import { describeConnectFailure, getEndpoints } from "../opcua/trust/store.ts";
import type { EndpointSpec, SecurityModeName, SecurityPolicyName, UserSpec } from "../opcua/types.ts";
import { intOption, parseCli, UsageError } from "./args.ts";
import { endpointUrlArg, openToolPki, type ToolPki } from "./endpoints.ts";
import { configOption } from "./state-dir.ts";

const usage = `usage: kerf browse URL [options]

Browses the variables below a node and prints a mapping-file skeleton (YAML) on stdout:
one group per child of the root, one node per variable (and object property) with its nsu=
node id, a key made from its browse path and its data type in a comment.

  --root NODE            where to start (node id, nsu= allowed); default Objects (i=85)
  --depth N              levels below the root; default 3
  --machine ID           machine id to put in the skeleton; default "machine"
  --max-nodes N          stop after N variables; default 5000
  --mode M               None | Sign | SignAndEncrypt | best; default SignAndEncrypt
  --policy P             Basic256Sha256 (default), Aes128_Sha256_RsaOaep, Aes256_Sha256_RsaPss,
                         Basic128Rsa15 or Basic256 (the last two with --allow-deprecated)
  --user U               log in as U (UserName token); default anonymous
  --password-file F      the password for --user (a trailing newline is ignored)
  --state-dir DIR        the connector's state dir: its certificate and trust store
                         (<DIR>/pki, created as kerf run would create it when missing) are
                         used, so the same trust rules apply; not needed with --mode None
  --config FILE          the connector config, read for its instance id when the PKI is
                         created; default $KERF_CONFIG or /etc/kerf/kerf.yaml, as for kerf run
  --allow-hostname-mismatch   accept a server certificate that does not name the URL's host
  --timeout MS           connect timeout; default 10000
`;

const OBJECTS = "i=85";
const SERVER = "i=2253";
const HAS_PROPERTY = "ns=0;i=46";
const HIERARCHICAL = "i=33";

/** `kerf browse URL`: a mapping-file skeleton of a server's variables, for commissioning. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    {
      root: { type: "string" },
      depth: { type: "string" },
      machine: { type: "string" },
      "max-nodes": { type: "string" },
      mode: { type: "string" },
      policy: { type: "string" },
      user: { type: "string" },
      "password-file": { type: "string" },
      "state-dir": { type: "string" },
      config: { type: "string" },
      "allow-deprecated": { type: "boolean" },
      "allow-hostname-mismatch": { type: "boolean" },
      timeout: { type: "string" },
    },
    "browse",
    usage,
  );
  const url = endpointUrlArg(positionals, "browse", usage);
  const depth = intOption(values.depth, "depth", 3);
  const maxNodes = intOption(values["max-nodes"], "max-nodes", 5000);
  const machine = values.machine ?? "machine";
  if (!MACHINE_ID.test(machine)) throw new UsageError(`--machine '${machine}' is not a valid machine id (1-128 letters, digits, '.', '_' or '-', starting with a letter or digit)`);
  const mode = choice(values.mode ?? "SignAndEncrypt", SECURITY_MODE_CHOICES, "mode");
  const policy = choice(values.policy ?? (mode === "None" ? "None" : "Basic256Sha256"), SECURITY_POLICIES, "policy");
  if (mode !== "best" && (mode === "None") !== (policy === "None")) throw new UsageError(`--mode ${mode} and --policy ${policy} do not go together (mode None goes with policy None only)`);
  if (DEPRECATED.has(policy) && !values["allow-deprecated"]) throw new UsageError(`--policy ${policy} is deprecated; add --allow-deprecated to use it`);
  const user = await userFrom(values.user, values["password-file"]);
  const stateDirText = values["state-dir"] ?? (process.env.KERF_STATE_DIR || undefined) ?? (mode === "None" ? undefined : "/var/lib/kerf");
  const stateDir = stateDirText === undefined ? undefined : path.resolve(stateDirText);
  const timeoutMs = intOption(values.timeout, "timeout", 10_000);

  // stdout carries the YAML: every log line goes to stderr.
  const logger = createLogger({ level: process.env.KERF_LOG_LEVEL ?? "warn", destination: 2 });
  routeOpcuaLogging(logger);
  const spec: EndpointSpec = {
    machine,
    endpointUrl: url,
    securityMode: mode,
    securityPolicy: policy,
    allowDeprecated: values["allow-deprecated"] ?? false,
    allowHostnameMismatch: values["allow-hostname-mismatch"] ?? false,
    user,
    connectTimeoutMs: timeoutMs,
    sessionTimeoutMs: 60_000,
    groups: [],
  };
  const pki = await openToolPki(stateDir, { required: mode !== "None", configFile: configOption(values.config) });
  try {
    const { client, session } = await connect(spec, pki, stateDir, logger);
    try {
      const root = values.root ?? OBJECTS;
      const result = await browseVariables(session, root, depth, maxNodes);
      process.stdout.write(renderSkeleton(result, { url, root, depth, machine, argv }));
      if (result.truncated) process.stderr.write(`kerf browse: stopped after ${maxNodes} variables; narrow it with --root or --depth, or raise --max-nodes\n`);
      if (result.deeper) process.stderr.write(`kerf browse: listed ${depth} level${depth === 1 ? "" : "s"} below the root (--depth ${depth}${values.depth === undefined ? ", the default" : ""}); there are nodes further down whose variables are not listed: raise --depth to include them\n`);
      return 0;
    } finally {
      await session.close().catch(() => undefined);
      await client.disconnect().catch(() => undefined);
    }
  } finally {
    await pki.dispose();
  }
}

/** Connects with the same checks as the connector's session: trust store, no downgrade, certificate names, user token. */
async function connect(spec: EndpointSpec, pki: ToolPki, stateDir: string | undefined, logger: Logger): Promise<{ client: OPCUAClient; session: ClientSession }> {
  let mode = spec.securityMode;
  let policy = spec.securityPolicy;
  if (mode === "best") {
    const endpoints = await getEndpoints(spec.endpointUrl, pki, spec.connectTimeoutMs).catch((err: Error) => {
      throw new KerfError("OPCUA_CONNECT", describeConnectError(err, spec));
    });
    const best = selectBest(endpoints, spec.allowDeprecated);
    if (!best) throw new KerfError("OPCUA_SECURITY", `${spec.machine} (${spec.endpointUrl}): mode best: the server offers no endpoint Kerf may use`);
    ({ mode, policy } = best);
    if (mode === "None") logger.warn("mode best: the server offers mode None only; browsing in clear");
  }
  if (mode !== "None" && !pki.persistent) throw new UsageError("a secured connection needs the connector's state directory: give --state-dir DIR");
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
  const fail = async (err: unknown, code: "OPCUA_CONNECT" | "OPCUA_UNTRUSTED_CERT" | "OPCUA_SECURITY"): Promise<never> => {
    await client.disconnect().catch(() => undefined);
    const text = pki.persistent ? await describeConnectFailure(err, { ...spec, securityMode: mode }, pki, stateDir) : describeConnectError(err, spec);
    throw new KerfError(/certificate/i.test(text) && code === "OPCUA_CONNECT" ? "OPCUA_UNTRUSTED_CERT" : code, text);
  };
  try {
    await client.connect(spec.endpointUrl);
  } catch (err) {
    return fail(err, "OPCUA_CONNECT");
  }
  const channel = (client as unknown as { _secureChannel: { securityMode: MessageSecurityMode; securityPolicy: SecurityPolicy } | null })._secureChannel;
  const endpoint = channel ? client.findEndpointForSecurity(channel.securityMode, channel.securityPolicy) : undefined;
  const refusal =
    !channel || !endpoint
      ? "the server does not describe the endpoint of this channel"
      : (checkNoDowngrade(channel, mode, policy) ??
        checkServerCertificate({ ...spec, securityMode: mode }, endpoint, logger) ??
        checkUserToken(endpoint, spec.user));
  if (refusal) return fail(new KerfError("OPCUA_SECURITY", `${spec.machine} (${spec.endpointUrl}): ${refusal}`), "OPCUA_SECURITY");
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

// ---------------------------------------------------------------------------------------------
// The skeleton

const GROUP_NAME = /^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$/;

export function renderSkeleton(result: BrowseResult, o: { url: string; root: string; depth: number; machine: string; argv: string[] }): string {
  if (result.variables.length === 0) {
    throw new KerfError("OPCUA_NODE", `no variables below ${result.rootName} (${o.root}) within ${o.depth} level${o.depth === 1 ? "" : "s"}; try a larger --depth or another --root`);
  }
  // One group per child of the root; variables right under the root go to a group named after it.
  const groups = new Map<string, BrowsedVariable[]>();
  for (const v of result.variables) {
    const head = v.path.length > 1 ? v.path[0]! : result.rootName;
    groups.set(head, [...(groups.get(head) ?? []), v]);
  }
  const groupNames = uniqueNames([...groups.keys()].map((g) => sanitize(g, GROUP_NAME, 64, "group")));
  const keys = uniqueNames(result.variables.map((v) => sanitize(v.path.join("."), DATA_POINT_KEY, 200, "value")));
  const keyOf = new Map(result.variables.map((v, i) => [v, keys[i]!]));

  const lines = [
    `# kerf browse ${o.argv.map(shellWord).join(" ")}`,
    `# ${result.variables.length} variable${result.variables.length === 1 ? "" : "s"} below ${result.rootName} (${o.root}), ${o.depth} level${o.depth === 1 ? "" : "s"} deep, browsed ${new Date().toISOString()}.`,
    `# Use the machine id from kerf.yaml, keep the nodes you need, and set publishingInterval per group.`,
    ...result.skipped.map((s) => `# skipped ${s}`),
    ...(result.truncated ? ["# stopped at --max-nodes: there are more variables"] : []),
    "machines:",
    `  ${yamlString(o.machine)}:`,
    "    groups:",
  ];
  [...groups.values()].forEach((vars, gi) => {
    lines.push(`      - name: ${yamlString(groupNames[gi]!)}`, "        publishingInterval: 1000", "        nodes:");
    for (const v of vars) {
      lines.push(`          - key: ${yamlString(keyOf.get(v)!)}`, `            node: ${JSON.stringify(v.nodeId)}  # ${v.dataType.replace(/[\r\n]/g, " ")}`);
    }
  });
  return lines.join("\n") + "\n";
}

function sanitize(text: string, pattern: RegExp, max: number, fallback: string): string {
  let s = text.replace(/[^A-Za-z0-9_.:/-]/g, "_");
  if (pattern === GROUP_NAME) s = s.replace(/[:/]/g, "_");
  s = s.replace(/^[.:/-]+/, "").slice(0, max);
  return pattern.test(s) ? s : fallback;
}

function uniqueNames(names: string[]): string[] {
  const used = new Set<string>();
  return names.map((n) => {
    let candidate = n;
    for (let i = 2; used.has(candidate); i++) candidate = `${n.slice(0, 190)}_${i}`;
    used.add(candidate);
    return candidate;
  });
}

function yamlString(s: string): string {
  return /^[A-Za-z_][A-Za-z0-9_.\/-]*$/.test(s) && !/^(true|false|null|yes|no|on|off|y|n)$/i.test(s) ? s : JSON.stringify(s);
}

function shellWord(s: string): string {
  const plain = /^[\w@%+=:,./-]+$/.test(s) ? s : `'${s.replaceAll("'", `'\\''`)}'`;
  return plain.replace(/[\r\n]/g, " ");
}

function choice<T extends string>(value: string, allowed: readonly T[], name: string): T {
  const found = allowed.find((a) => a === value);
  if (!found) throw new UsageError(`--${name} '${value}' is not one of ${allowed.join(", ")}`);
  return found;
}

async function userFrom(username: string | undefined, passwordFile: string | undefined): Promise<UserSpec> {
  if (username === undefined) {
    if (passwordFile !== undefined) throw new UsageError("--password-file needs --user");
    return { type: "anonymous" };
  }
  if (passwordFile === undefined) throw new UsageError("--user needs --password-file (Kerf does not take a password on the command line, where other users can see it)");
  let password: string;
  try {
    password = (await readFile(passwordFile, "utf8")).replace(/\r?\n$/, "");
  } catch (err) {
    throw new KerfError("USAGE", `cannot read the password file ${passwordFile}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  return { type: "username", username, password };
}

export type { SecurityModeName, SecurityPolicyName };
