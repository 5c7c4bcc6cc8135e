import { AttributeIds, BrowsePath, NodeId, type ClientSession } from "node-opcua-client";
import type { Logger } from "../../log.ts";
import { namespaceIndex, parseBrowsePath } from "../../config/browse-path.ts";
import { resolveMappedNodeId } from "./nodes.ts";
import type { NodeSpec } from "../types.ts";

const OBJECTS_FOLDER = "i=85";
const HIERARCHICAL_REFERENCES = "i=33";
const AGGREGATES = "i=44";
/** Server_ServerCapabilities_OperationLimits_MaxNodesPerTranslateBrowsePathsToNodeIds */
const MAX_NODES_PER_TRANSLATE = "i=11712";
/** When the server states no limit: small enough for any server we met. */
const DEFAULT_PER_TRANSLATE = 1000;

/**
 * The NodeIds of mapped data points on this server: `nsu=` ids against the current namespace
 * array, browse paths with TranslateBrowsePathsToNodeIds in calls that fit the server's limit.
 * Runs on every connect, since a server restart may renumber namespaces and nodes. A data
 * point that does not resolve gets one error line (key, what was asked, why) and is left out;
 * the others are not held up by it.
 */
export async function resolveNodes(session: ClientSession, nodes: readonly NodeSpec[], namespaceArray: readonly string[], logger: Logger): Promise<Map<NodeSpec, NodeId>> {
  const out = new Map<NodeSpec, NodeId>();
  const paths: { spec: NodeSpec; path: BrowsePath }[] = [];
  for (const spec of nodes) {
    try {
      if (spec.browsePath !== undefined) paths.push({ spec, path: browsePath(spec, namespaceArray) });
      else out.set(spec, resolveMappedNodeId(spec.node ?? "", namespaceArray));
    } catch (err) {
      logger.error({ point: spec.key, ...address(spec) }, `${(err as Error).message}; this data point is not subscribed`);
    }
  }
  if (paths.length === 0) return out;

  const perCall = await readLimit(session);
  for (let i = 0; i < paths.length; i += perCall) {
    const batch = paths.slice(i, i + perCall);
    const results = await session.translateBrowsePath(batch.map((b) => b.path));
    results.forEach((result, j) => {
      const { spec } = batch[j]!;
      const target = result.targets?.find((t) => t.remainingPathIndex === 0xffffffff && t.targetId.serverIndex === 0);
      if (result.statusCode.isNotGood() || !target) {
        const status = result.statusCode.isNotGood() ? result.statusCode.name : "the path leads to another server";
        logger.error({ point: spec.key, ...address(spec), status }, "browse path not found on the server; this data point is not subscribed");
        return;
      }
      if ((result.targets?.length ?? 0) > 1) {
        logger.warn({ point: spec.key, browsePath: spec.browsePath, matches: result.targets!.length }, "browse path matches several nodes; using the first");
      }
      const id = target.targetId;
      out.set(spec, new NodeId(id.identifierType, id.value, id.namespace));
    });
  }
  return out;
}

function browsePath(spec: NodeSpec, namespaceArray: readonly string[]): BrowsePath {
  const elements = parseBrowsePath(spec.browsePath ?? "").map((e) => ({
    referenceTypeId: e.reference === "hierarchical" ? HIERARCHICAL_REFERENCES : AGGREGATES,
    isInverse: false,
    includeSubtypes: true,
    targetName: { namespaceIndex: namespaceIndex(e, namespaceArray), name: e.name },
  }));
  return new BrowsePath({ startingNode: resolveMappedNodeId(spec.startNode ?? OBJECTS_FOLDER, namespaceArray), relativePath: { elements } });
}

function address(spec: NodeSpec): Record<string, string> {
  return spec.browsePath !== undefined ? { browsePath: spec.browsePath, startNode: spec.startNode ?? OBJECTS_FOLDER } : { node: spec.node ?? "" };
}

async function readLimit(session: ClientSession): Promise<number> {
  const dv = await session.read({ nodeId: MAX_NODES_PER_TRANSLATE, attributeId: AttributeIds.Value }).catch(() => null);
  const n = Number(dv?.value?.value ?? 0);
  return Number.isInteger(n) && n > 0 ? Math.min(n, DEFAULT_PER_TRANSLATE * 10) : DEFAULT_PER_TRANSLATE;
}
