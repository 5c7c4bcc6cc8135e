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
  | { type: "username"; username: string; password: string }
  | { type: "certificate"; certificatePem: string; privateKeyPem: string };

export interface NodeSpec {
  key: string;
  /** Node id string, `nsu=` form allowed. */
  node: string;
  samplingInterval: number;
  queueSize: number;
  discardOldest: boolean;
}

export interface GroupSpec {
  name: string;
  publishingInterval: number;
  nodes: NodeSpec[];
}

export interface EndpointSpec {
  machine: string;
  endpointUrl: string;
  /** "best": the strongest endpoint the server offers, chosen on each connect. */
  securityMode: SecurityModeName | "best";
  /** Ignored with mode "best". */
  securityPolicy: SecurityPolicyName;
  allowDeprecated: boolean;
  user: UserSpec;
  connectTimeoutMs: number;
  sessionTimeoutMs: number;
  groups: GroupSpec[];
}

export type SessionState = "disconnected" | "connecting" | "connected" | "reconnecting" | "stopped";
