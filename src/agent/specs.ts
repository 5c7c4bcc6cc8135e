import type { LoadedConfig } from "../config/load.ts";
import type { MappingGroup } from "../config/schema.ts";
import type { EndpointSpec, GroupSpec } from "../opcua/types.ts";

/** The configured machines as the OPC UA layer takes them, with their secrets. */
export function endpointSpecs(loaded: LoadedConfig, secrets: LoadedConfig["secrets"]): EndpointSpec[] {
  const { config, mapping } = loaded;
  return config.machines.map((m) => {
    const groups = mapping.machines[m.id]?.groups ?? [];
    const user = m.user;
    return {
      machine: m.id,
      endpointUrl: m.endpoint,
      securityMode: m.security.mode,
      securityPolicy: m.security.policy,
      allowDeprecated: m.security.allowDeprecated,
      trustOnFirstUse: m.trustOnFirstUse,
      allowHostnameMismatch: m.allowHostnameMismatch,
      user:
        user.type === "username"
          ? { type: "username", username: user.username, password: secrets.machines[m.id]?.password?.reveal() ?? "", ...(user.passwordFile ? { passwordFile: user.passwordFile } : {}) }
          : user.type === "certificate"
            ? { type: "certificate", certificatePem: secrets.machines[m.id]?.userCertificatePem ?? "", privateKeyPem: secrets.machines[m.id]?.userPrivateKey?.reveal() ?? "" }
            : { type: "anonymous" },
      connectTimeoutMs: m.connectTimeoutMs,
      sessionTimeoutMs: m.sessionTimeoutMs,
      groups: groupSpecs(groups),
    };
  });
}

/** The mapping's groups as the OPC UA layer takes them (also for a reloaded mapping: `applyMapping`). */
export function groupSpecs(groups: readonly MappingGroup[]): GroupSpec[] {
  // The schema has already resolved every per-node setting against its group.
  return groups.map((g) => ({
    name: g.name,
    publishingInterval: g.publishingInterval,
    ...(g.priority !== undefined ? { priority: g.priority } : {}),
    ...(g.watchdogSeconds ? { watchdogSeconds: g.watchdogSeconds } : {}),
    // The schema's node objects are NodeSpecs already (resolved, without undefined fields);
    // 100,000 copies of them would cost ~6 MB for nothing.
    nodes: g.nodes,
    events: (g.events ?? []).map((e) => ({ key: e.key, notifier: e.notifier, eventType: e.eventType, select: e.select, queueSize: e.queueSize })),
  }));
}
