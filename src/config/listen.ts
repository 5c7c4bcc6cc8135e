import { isIPv4, isIPv6 } from "node:net";
import path from "node:path";

/** Where the local status and metrics endpoint listens: a loopback TCP port or a Unix socket. */
export type ListenAddress = { kind: "tcp"; host: string; port: number } | { kind: "unix"; path: string };

export const LISTEN_EXPECTED = "127.0.0.1:PORT, [::1]:PORT or unix:/absolute/path (the endpoint is local only)";

/**
 * Parses `status.listen`. Anything but a loopback address is refused: the endpoint tells
 * everything about the connector and must not be reachable from the network (0.0.0.0 included).
 * Returns the reason as a string when it is refused.
 */
export function parseListen(value: string): ListenAddress | string {
  if (value.startsWith("unix:")) {
    const file = value.slice("unix:".length);
    return path.isAbsolute(file) ? { kind: "unix", path: file } : "the Unix socket path is not absolute";
  }
  const m = /^(?:\[([^\]]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(value);
  if (!m) return "not an address with a port";
  const host = (m[1] ?? m[2])!;
  const port = Number(m[3]);
  if (port > 65_535) return "the port is above 65535";
  if (!isIPv4(host) && !isIPv6(host)) return "the host is not an IP address (a name could resolve to a reachable one)";
  if (!isLoopback(host)) return `${host} is not a loopback address: the endpoint would be reachable from the network`;
  return { kind: "tcp", host, port };
}

function isLoopback(ip: string): boolean {
  if (isIPv4(ip)) return ip.split(".")[0] === "127";
  const lower = ip.toLowerCase();
  return lower === "::1" || lower === "0:0:0:0:0:0:0:1" || /^::ffff:127\./.test(lower);
}
