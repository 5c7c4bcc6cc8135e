/**
 * Which HTTP CONNECT proxy carries the connections to the cloud: `cloud.proxy` in the config,
 * else HTTPS_PROXY and NO_PROXY from the environment, read as curl reads them. The proxy only
 * opens a TCP tunnel to the host and port it is asked for; the TLS handshake with the cloud
 * (client certificate, pin check) runs inside the tunnel, end to end (transport.ts).
 */
import { Pool, type Dispatcher } from "undici";
import { Secret } from "../config/secrets.ts";
import { KerfError } from "../errors.ts";
import { proxyError } from "./errors.ts";

export interface ProxySettings {
  /** The proxy, `http://host:port` or `https://host:port`, without credentials: safe to log. */
  url: string;
  /** Hosts reached without the proxy, NO_PROXY syntax; empty: every connection uses the proxy. */
  noProxy: string;
  /** Basic authentication towards the proxy. */
  username?: Secret | undefined;
  password?: Secret | undefined;
  /** Where the setting came from, for the start-up line. */
  source: "config" | "environment";
}

/** curl's default proxy port when a proxy URL names none. */
const CURL_DEFAULT_PORT: Record<string, string> = { "http:": "1080", "https:": "443" };

/**
 * The proxy to use: the config's if it has one (the environment is then ignored entirely),
 * else `https_proxy`/`HTTPS_PROXY` with `no_proxy`/`NO_PROXY` (lower case first, an empty
 * value counts as unset, as in curl), else none. `HTTP_PROXY` and `ALL_PROXY` are not read:
 * every cloud connection is HTTPS.
 */
export function resolveProxy(
  config: { url: string } | undefined,
  credentials: { username?: Secret | undefined; password?: Secret | undefined } | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ProxySettings | null {
  if (config) return { url: new URL(config.url).origin, noProxy: "", username: credentials?.username, password: credentials?.password, source: "config" };
  const [name, value] = env.https_proxy ? ["https_proxy", env.https_proxy] : env.HTTPS_PROXY ? ["HTTPS_PROXY", env.HTTPS_PROXY] : [];
  if (!name || !value) return null;
  // curl reads a proxy without a scheme as http://.
  const text = value.includes("://") ? value : `http://${value}`;
  const url = URL.canParse(text) ? new URL(text) : null;
  if (!url || !(url.protocol in CURL_DEFAULT_PORT) || url.hostname === "") {
    // The value may carry a password: name the variable, not its content.
    throw new KerfError("CONFIG_INVALID", `environment variable ${name} is not a proxy URL (expected http://host:port or https://host:port; SOCKS proxies are not supported); unset it or set cloud.proxy`);
  }
  const decode = (part: string, what: string): Secret => {
    try {
      return new Secret(decodeURIComponent(part));
    } catch {
      throw new KerfError("CONFIG_INVALID", `environment variable ${name}: the proxy ${what} is not valid percent-encoding (write a literal % as %25); unset it or set cloud.proxy with credential files`);
    }
  };
  const username = url.username ? decode(url.username, "user name") : undefined;
  const password = url.username ? decode(url.password, "password") : undefined;
  const port = url.port || CURL_DEFAULT_PORT[url.protocol];
  return { url: `${url.protocol}//${url.hostname}:${port}`, noProxy: env.no_proxy || env.NO_PROXY || "", username, password, source: "environment" };
}

/** The one start-up line: which proxy, why, and whether it authenticates; never the credentials. */
export function describeProxy(proxy: ProxySettings | null, env: NodeJS.ProcessEnv = process.env): string {
  if (!proxy) return "uplink connects directly: no cloud.proxy in the config and no HTTPS_PROXY in the environment";
  const why = proxy.source === "config" ? `cloud.proxy in the config${env.https_proxy || env.HTTPS_PROXY ? " (it wins over HTTPS_PROXY in the environment)" : ""}` : "HTTPS_PROXY in the environment";
  const auth = proxy.username ? "with Basic authentication" : "without authentication";
  const bypass = proxy.noProxy ? `; direct to hosts matching NO_PROXY=${proxy.noProxy}` : "";
  return `uplink connects through the HTTP CONNECT proxy ${proxy.url} ${auth}, from ${why}${bypass}; TLS with the cloud (client certificate, pins) runs end to end through the tunnel`;
}

/** The Proxy-Authorization value (RFC 7617), or undefined without credentials. */
export function proxyAuthorization(proxy: ProxySettings): string | undefined {
  if (!proxy.username) return undefined;
  return `Basic ${Buffer.from(`${proxy.username.reveal()}:${proxy.password?.reveal() ?? ""}`).toString("base64")}`;
}

/**
 * undici's ProxyAgent `clientFactory`: the connection to the proxy, whose CONNECT outcome
 * becomes a KerfError naming the proxy. undici itself only says "Proxy response (407) !== 200".
 * A proxy that takes the connection but never answers the CONNECT fails after `timeoutMs`.
 */
export function tunnelClientFactory(proxy: ProxySettings, timeoutMs: number): (origin: URL, options: object) => Dispatcher {
  return (origin, options) => {
    const pool = new Pool(origin, { ...options, headersTimeout: timeoutMs });
    const connect = pool.connect.bind(pool) as (o: Dispatcher.ConnectOptions) => Promise<Dispatcher.ConnectData>;
    const tunnel = async (o: Dispatcher.ConnectOptions): Promise<Dispatcher.ConnectData> => {
      let data: Dispatcher.ConnectData;
      try {
        data = await connect(o);
      } catch (err) {
        throw proxyError(proxy, o.path, { error: err });
      }
      if (data.statusCode === 200) return data;
      data.socket.destroy();
      throw proxyError(proxy, o.path, { status: data.statusCode });
    };
    return Object.assign(pool, { connect: tunnel });
  };
}
