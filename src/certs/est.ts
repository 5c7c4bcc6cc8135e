/**
 * An EST client (RFC 7030, with the clarifications of RFC 8951): `/cacerts`, `/simpleenroll`
 * authenticated by a one-time bootstrap token (HTTP Basic, §3.2.3), and `/simplereenroll`
 * authenticated by the current client certificate. Every request goes through a pinned
 * Transport; the bootstrap has no client certificate yet, so it uses one without an identity.
 *
 * A response is checked before anyone installs it: the certificate is for the key of the
 * request, names the subject and SAN that were requested, chains to the EST CA certificates
 * and is valid now.
 */
import { X509Certificate, createPublicKey } from "node:crypto";
import { request, type Dispatcher } from "undici";
import { KerfError } from "../errors.ts";
import type { Secret } from "../config/secrets.ts";
import { publicKeyPin } from "./pins.ts";
import { x509 } from "./x509.ts";

export interface EstClientOptions {
  /** The EST base, e.g. https://cloud.example.com/.well-known/est (RFC 7030 §3.2.2). */
  url: string;
  /** A pinned Transport: with the instance identity for reenrolment, without one for the bootstrap. */
  dispatcher: Dispatcher;
  timeoutMs?: number;
}

/** A refusal by the EST server: its status and the text it gave. */
export interface EstRefusal {
  status: number;
  text: string;
}

const MAX_BODY = 256 * 1024;
/** Accepted clock skew between us and the CA for a certificate's start of validity. */
const SKEW_MS = 5 * 60_000;

export class EstClient {
  readonly #o: EstClientOptions;
  readonly #base: string;

  constructor(options: EstClientOptions) {
    this.#o = options;
    this.#base = options.url.replace(/\/+$/, "");
  }

  get url(): string {
    return this.#base;
  }

  /** The EST CA certificates (RFC 7030 §4.1): the trust anchors the issued chain must verify to. */
  async caCerts(): Promise<X509Certificate[]> {
    const res = await this.#call("GET", "cacerts");
    if (res.status !== 200) throw estError("cacerts", res, this.#base);
    const certs = parseCertsOnly(res.text, "cacerts");
    if (certs.length === 0) throw new KerfError("CERT_ENROLMENT", `the EST server at ${this.#base} returned no CA certificates from /cacerts`);
    return certs;
  }

  /** The first enrolment: `/simpleenroll` with the bootstrap token as HTTP Basic password, username the instance. */
  async enroll(csrPem: string, auth: { username: string; token: Secret }): Promise<string> {
    const cas = await this.caCerts();
    const basic = Buffer.from(`${auth.username}:${auth.token.reveal()}`).toString("base64");
    const res = await this.#call("POST", "simpleenroll", csrBody(csrPem), { authorization: `Basic ${basic}` });
    if (res.status !== 200) throw estError("simpleenroll", res, this.#base);
    return checkIssued(csrPem, parseCertsOnly(res.text, "simpleenroll"), cas, new Date());
  }

  /** A renewal: `/simplereenroll`, authenticated by the client certificate the dispatcher presents. */
  async reenroll(csrPem: string): Promise<string> {
    const cas = await this.caCerts();
    const res = await this.#call("POST", "simplereenroll", csrBody(csrPem));
    if (res.status !== 200) throw estError("simplereenroll", res, this.#base);
    return checkIssued(csrPem, parseCertsOnly(res.text, "simplereenroll"), cas, new Date());
  }

  async #call(method: "GET" | "POST", op: string, body?: string, headers: Record<string, string> = {}): Promise<{ status: number; text: string; contentType: string }> {
    const timeout = this.#o.timeoutMs ?? 30_000;
    try {
      const res = await request(`${this.#base}/${op}`, {
        dispatcher: this.#o.dispatcher,
        method,
        headers: { ...headers, ...(body === undefined ? {} : { "content-type": "application/pkcs10", "content-transfer-encoding": "base64" }) },
        ...(body === undefined ? {} : { body }),
        headersTimeout: timeout,
        bodyTimeout: timeout,
        signal: AbortSignal.timeout(timeout),
      });
      let size = 0;
      const chunks: Buffer[] = [];
      for await (const chunk of res.body as AsyncIterable<Buffer>) {
        size += chunk.length;
        if (size > MAX_BODY) {
          res.body.destroy();
          throw new KerfError("CERT_ENROLMENT", `the EST server's answer to /${op} exceeds ${MAX_BODY} bytes`);
        }
        chunks.push(chunk);
      }
      return { status: res.statusCode, text: Buffer.concat(chunks).toString("utf8"), contentType: String(res.headers["content-type"] ?? "") };
    } catch (err) {
      if (err instanceof KerfError) throw err;
      const code = (err as NodeJS.ErrnoException).code;
      throw new KerfError("CERT_ENROLMENT", `EST request ${method} ${this.#base}/${op} failed: ${(err as Error).message}${code ? ` (${code})` : ""}`, { cause: err });
    }
  }
}

/** RFC 7030 §4.2.1: the body is the base64 DER of the PKCS#10 request. */
function csrBody(csrPem: string): string {
  return Buffer.from(new x509.Pkcs10CertificateRequest(csrPem).rawData).toString("base64");
}

/** A certs-only PKCS#7 (application/pkcs7-mime), base64 as RFC 8951 says, line breaks allowed. */
export function parseCertsOnly(text: string, op: string): X509Certificate[] {
  const b64 = text.replace(/\s+/g, "");
  try {
    if (!/^[A-Za-z0-9+/]+={0,2}$/.test(b64)) throw new Error("not base64");
    const certs = new x509.X509Certificates();
    certs.import(Buffer.from(b64, "base64"));
    return certs.map((c) => new X509Certificate(Buffer.from(c.rawData)));
  } catch (err) {
    throw new KerfError("CERT_ENROLMENT", `the EST server's answer to /${op} is not a base64 certs-only PKCS#7 (${(err as Error).message})`);
  }
}

/**
 * Checks an issued certificate against the request before it may be installed, and returns
 * the chain to install (leaf first, then the intermediates that lead to an EST CA).
 */
export function checkIssued(csrPem: string, certs: X509Certificate[], cas: X509Certificate[], now: Date): string {
  const csr = new x509.Pkcs10CertificateRequest(csrPem);
  const csrPin = publicKeyPin(createPublicKey({ key: Buffer.from(csr.publicKey.rawData), format: "der", type: "spki" }));
  const refuse = (why: string) => new KerfError("CERT_ENROLMENT", `the EST server issued a certificate that Kerf refuses: ${why}; nothing was installed`);
  const leaf = certs.find((c) => publicKeyPin(c.publicKey) === csrPin);
  if (!leaf) throw refuse(`none of the ${certs.length} certificate(s) returned is for the key of the request (key pin ${csrPin})`);

  const wantCn = /(?:^|,\s*)CN=([^,]+)/.exec(csr.subject)?.[1];
  const gotCn = /(?:^|\n)CN=([^\n]*)/.exec(leaf.subject)?.[1];
  if (gotCn !== wantCn) throw refuse(`its subject is '${leaf.subject.replace(/\n/g, ", ")}', the request asked for CN=${wantCn}`);
  const sanExt = csr.getExtension("2.5.29.17");
  const wantUris = sanExt ? new x509.SubjectAlternativeNameExtension(sanExt.rawData).names.items.filter((n) => n.type === "url").map((n) => n.value) : [];
  const gotUris = (leaf.subjectAltName ?? "").split(", ").filter((n) => n.startsWith("URI:")).map((n) => n.slice(4));
  if (wantUris.join(" ") !== gotUris.join(" ")) throw refuse(`its SAN URIs are [${gotUris.join(", ")}], the request asked for [${wantUris.join(", ")}]`);

  const notBefore = new Date(leaf.validFrom).getTime();
  const notAfter = new Date(leaf.validTo).getTime();
  if (notAfter <= now.getTime()) throw refuse(`it expired on ${leaf.validTo}`);
  if (notBefore > now.getTime() + SKEW_MS) throw refuse(`it is not valid before ${new Date(notBefore).toISOString()}`);
  if (notAfter <= notBefore) throw refuse("its validity period is empty");

  // Walk up: each link signed by the next, until an EST CA certificate signed the last.
  const chain = [leaf];
  const pool = certs.filter((c) => c !== leaf);
  for (let cert = leaf; ; ) {
    const anchor = cas.find((ca) => cert.checkIssued(ca) && cert.verify(ca.publicKey));
    if (anchor) break;
    const parent = pool.find((p) => p.ca && cert.checkIssued(p) && cert.verify(p.publicKey) && !chain.includes(p));
    if (!parent) throw refuse(`its chain does not verify to the EST CA certificates (issuer '${cert.issuer.replace(/\n/g, ", ")}'; CA certificates: ${cas.map((c) => `'${c.subject.replace(/\n/g, ", ")}'`).join(", ")})`);
    if (new Date(parent.validTo).getTime() <= now.getTime()) throw refuse(`its intermediate '${parent.subject}' expired on ${parent.validTo}`);
    chain.push(parent);
    cert = parent;
  }
  return chain.map((c) => c.toString()).join("");
}

/** A refusal with what the server said and what the operator can do. */
function estError(op: string, res: { status: number; text: string; contentType: string }, base: string): KerfError {
  const said = res.contentType.includes("json") ? jsonMessage(res.text) : res.text;
  const text = said.replace(/[^\x20-\x7e]+/g, " ").trim().slice(0, 400);
  const hint =
    op === "simplereenroll"
      ? " The certificate in service was not accepted for renewal; if it has expired, enrol again with a new bootstrap token: kerf enroll --token-file FILE"
      : res.status === 401 || res.status === 403
        ? " Ask the cloud administrator for a new bootstrap token (devcloud: kerf devcloud --issue-token INSTANCE) and run kerf enroll --token-file FILE"
        : "";
  return new KerfError("CERT_ENROLMENT", `the EST server at ${base} refused /${op} with HTTP ${res.status}${text ? `: ${text}` : ""}.${hint}`, { details: [`status ${res.status}`] });
}

function jsonMessage(text: string): string {
  try {
    const v = JSON.parse(text) as { error?: unknown };
    return typeof v.error === "string" ? v.error : text;
  } catch {
    return text;
  }
}
