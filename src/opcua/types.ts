/** What the OPC UA layer needs to know; the agent maps the config file onto these. */

export type SecurityModeName = "None" | "Sign" | "SignAndEncrypt";
export type SecurityPolicyName =
  | "None"
  | "Basic128Rsa15"
  | "Basic256"
  | "Basic256Sha256"
  | "Aes128_Sha256_RsaOaep"
  | "Aes256_Sha256_RsaPss";

export type UserSpec =
  | { type: "anonymous" }
  /** `passwordFile`, when the password comes from one: read again at each connect attempt. */
  | { type: "username"; username: string; password: string; passwordFile?: string }
  | { type: "certificate"; certificatePem: string; privateKeyPem: string };

export type DataChangeTriggerName = "status" | "statusValue" | "statusValueTimestamp";

/** Changes smaller than this are not reported; percent needs the node's EURange on the server. */
export interface DeadbandSpec {
  type: "absolute" | "percent";
  value: number;
}

export interface NodeSpec {
  key: string;
  /** Node id string, `nsu=` form allowed. Exactly one of `node` and `browsePath` is set. */
  node?: string;
  /** Relative path such as `/2:Machine/<nsu=urn:x>State.0:Id` (see src/config/browse-path.ts), resolved on every connect. */
  browsePath?: string;
  /** Where `browsePath` starts; default Objects (i=85). */
  startNode?: string;
  samplingInterval: number;
  queueSize: number;
  discardOldest: boolean;
  deadband?: DeadbandSpec;
  /** Default statusValue (the OPC UA default). */
  dataChangeTrigger?: DataChangeTriggerName;
  /** Resend the last value every N s while nothing changes; 0 or absent = off. */
  heartbeatSeconds?: number;
  /** Drop the notification every new monitored item sends with the current value. */
  skipFirst?: boolean;
  /** OPC UA NumericRange, e.g. "0:3" or "1,0:2". */
  indexRange?: string;
  /** Engineering unit, sent with each value as `u`. */
  unit?: string;
  /** v' = v × scale + offset, for numeric values. */
  scale?: number;
  offset?: number;
}

/** An event subscription: events of `eventType` (or a subtype) notified through `notifier`. */
export interface EventSpec {
  key: string;
  /** Node id string; default the Server object (i=2253). */
  notifier: string;
  /** Node id string; default BaseEventType (i=2041), i.e. all events. */
  eventType: string;
  /** Browse paths relative to the event type, e.g. "Message", "ActiveState/Id"; each becomes a field. */
  select: string[];
  queueSize: number;
}

export interface GroupSpec {
  name: string;
  publishingInterval: number;
  /** The subscription's priority, 0..255; absent: derived from its rate (subscriptionPriority). */
  priority?: number;
  /** Reconnect when the group has had no data for this long (a server that answers but is stuck). */
  watchdogSeconds?: number;
  nodes: NodeSpec[];
  events?: EventSpec[];
}

export interface EndpointSpec {
  machine: string;
  endpointUrl: string;
  /** "best": the strongest endpoint the server offers, chosen on each connect. */
  securityMode: SecurityModeName | "best";
  /** Ignored with mode "best". */
  securityPolicy: SecurityPolicyName;
  allowDeprecated: boolean;
  /** Commissioning only: trust the first certificate this endpoint presents (logged). Default false. */
  trustOnFirstUse?: boolean;
  /** Legacy machines: accept a certificate whose subjectAltName does not name the endpoint's host (warned on each connect). */
  allowHostnameMismatch?: boolean;
  user: UserSpec;
  connectTimeoutMs: number;
  sessionTimeoutMs: number;
  groups: GroupSpec[];
}

export type SessionState = "disconnected" | "connecting" | "connected" | "reconnecting" | "stopped";
