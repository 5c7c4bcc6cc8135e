import { resolveNodeId, type NodeId } from "node-opcua-client";
import { KerfError } from "../../errors.ts";

/**
 * Resolves a mapping's node id string against the server's current namespace array.
 * `nsu=` ids are resolved on every connect, because a server restart may reorder namespaces.
 */
export function resolveMappedNodeId(text: string, namespaceArray: readonly string[]): NodeId {
  if (text.startsWith("nsu=")) {
    const sep = text.indexOf(";");
    if (sep < 0) throw new KerfError("OPCUA_NODE", `node id '${text}': expected nsu=<uri>;<i|s|g|b>=<id>`);
    const uri = text.slice(4, sep);
    const index = namespaceArray.indexOf(uri);
    if (index < 0) throw new KerfError("OPCUA_NODE", `node id '${text}': the server has no namespace '${uri}'`);
    return resolveNodeId(`ns=${index};${text.slice(sep + 1)}`);
  }
  try {
    return resolveNodeId(text);
  } catch (err) {
    throw new KerfError("OPCUA_NODE", `node id '${text}' is not valid: ${(err as Error).message}`);
  }
}
