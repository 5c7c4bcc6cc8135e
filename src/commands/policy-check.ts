/**
 * The owner's local policy against the machine itself (issue 16: misconfiguration shows at
 * start, not at call time): each writable node must be a Variable of the configured type that
 * the connector's session may write, and each callable method must exist with the configured
 * input types. Run after each connect (and after a mapping change); what does not resolve is
 * reported with the config's file:line, never silently.
 */
import { readFileSync } from "node:fs";
import { AttributeIds, DataType, NodeClass, type ClientSession } from "node-opcua-client";
import type { LoadedConfig } from "../config/load.ts";
import { parseYaml } from "../config/yaml-source.ts";
import { resolveMappedNodeId } from "../opcua/subscription/nodes.ts";

/** AccessLevel bit CurrentWrite (OPC 10000-3 §8.57). */
const CURRENT_WRITE = 0x02;

export interface PolicyFinding {
  /** Path in kerf.yaml, e.g. ["commands", "machines", "saw-1", "write", 0, "node"]. */
  path: (string | number)[];
  message: string;
}

export async function checkPolicyOnServer(session: ClientSession, ns: readonly string[], loaded: LoadedConfig, machine: string): Promise<PolicyFinding[]> {
  const rules = loaded.config.commands?.machines[machine];
  if (!rules) return [];
  const findings: PolicyFinding[] = [];
  const base = ["commands", "machines", machine];
  for (const [i, w] of rules.write.entries()) {
    const at = [...base, "write", i, "node"];
    let nodeId;
    try {
      nodeId = resolveMappedNodeId(w.node, ns);
    } catch (err) {
      findings.push({ path: at, message: (err as Error).message });
      continue;
    }
    const [cls, type, access] = await session.read([AttributeIds.NodeClass, AttributeIds.DataType, AttributeIds.UserAccessLevel].map((attributeId) => ({ nodeId, attributeId })));
    if (!cls!.statusCode.isGood()) findings.push({ path: at, message: `node ${w.node} does not resolve on the server (${cls!.statusCode.name})` });
    else if (cls!.value.value !== NodeClass.Variable) findings.push({ path: at, message: `node ${w.node} is a ${NodeClass[cls!.value.value as number]}, not a Variable` });
    else {
      const dataType = type!.value.value?.toString();
      if (dataType !== `ns=0;i=${DataType[w.type]}`) findings.push({ path: [...base, "write", i, "type"], message: `node ${w.node} has DataType ${dataType} (expected ${w.type}, ns=0;i=${DataType[w.type]})` });
      if ((Number(access!.value.value) & CURRENT_WRITE) === 0) findings.push({ path: at, message: `node ${w.node} is not writable for the connector's session (UserAccessLevel ${access!.value.value})` });
    }
  }
  for (const [i, c] of rules.call.entries()) {
    const at = [...base, "call", i, "method"];
    try {
      const methodId = resolveMappedNodeId(c.method, ns);
      const [cls] = await session.read([{ nodeId: methodId, attributeId: AttributeIds.NodeClass }]);
      if (!cls!.statusCode.isGood() || cls!.value.value !== NodeClass.Method) {
        findings.push({ path: at, message: `method ${c.method} does not resolve on the server (${cls!.statusCode.isGood() ? `a ${NodeClass[cls!.value.value as number]}` : cls!.statusCode.name})` });
        continue;
      }
      const def = await session.getArgumentDefinition(methodId);
      const types = (def.inputArguments ?? []).map((a) => DataType[Number(a.dataType.value)] ?? a.dataType.toString());
      if (types.join(",") !== c.inputs.join(",")) findings.push({ path: [...base, "call", i, "inputs"], message: `method ${c.method} takes [${types.join(", ")}] (configured [${c.inputs.join(", ")}])` });
    } catch (err) {
      findings.push({ path: at, message: `method ${c.method} does not resolve on the server: ${(err as Error).message}` });
    }
  }
  return findings;
}

/** "FILE:LINE:COL: path: message", located in the config file as the loader does. */
export function locateFindings(loaded: LoadedConfig, findings: PolicyFinding[]): string[] {
  if (findings.length === 0) return [];
  const source = parseYaml(loaded.file, readFileSync(loaded.file, "utf8"));
  return findings.map((f) => {
    const { line, col } = source.position(source.locate(f.path, "value"));
    return `${loaded.file}:${line}:${col}: ${f.path.join(".")}: ${f.message}`;
  });
}
