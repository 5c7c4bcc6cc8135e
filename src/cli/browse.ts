import { readFile } from "node:fs/promises";
import path from "node:path";
import { KerfError } from "../errors.ts";
import { createLogger } from "../log.ts";
import { DATA_POINT_KEY, MACHINE_ID, SECURITY_MODE_CHOICES, SECURITY_POLICIES } from "../config/schema.ts";
import { routeOpcuaLogging } from "../opcua/logging.ts";
import { browseVariables, chooseSecurity, OBJECTS, openBrowseSession, type BrowseResult, type BrowsedVariable } from "../opcua/browse.ts";
import { DEPRECATED } from "../opcua/session/security.ts";
import type { EndpointSpec, SecurityModeName, SecurityPolicyName, UserSpec } from "../opcua/types.ts";
import { intOption, parseCli, UsageError } from "./args.ts";
import { endpointUrlArg, openToolPki } from "./endpoints.ts";
import { configOption } from "./state-dir.ts";

export const usage = `usage: kerf browse URL [options]

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
    const security = await chooseSecurity(spec, pki, logger);
    if (security.mode !== "None" && !pki.persistent) throw new UsageError("a secured connection needs the connector's state directory: give --state-dir DIR");
    const { client, session } = await openBrowseSession(spec, security, pki, { explainTrust: pki.persistent, stateDir, logger });
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
