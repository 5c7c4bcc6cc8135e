export { startDevCloud, type DevCloud, type DevCloudFaults, type DevCloudOptions, type FaultAnswer } from "./server.ts";
export { CloudStore, type BatchRecord, type CloudCounts, type StoredItem } from "./store.ts";
export { createHostile, FAULT_KINDS, type FaultKind, type Hostile, type HostileOptions } from "./hostile.ts";
export { EST_PATH, MAX_FAILURES, type EstFaults, type EstServer } from "./est.ts";
