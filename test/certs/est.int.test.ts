/**
 * EST enrolment (RFC 7030) against the devcloud's real EST server over real TLS: the bootstrap
 * with a one-time token, its refusals and lockout, the client's checks of what it is given, and
 * the server's checks of /simplereenroll.
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, X509Certificate } from "node:crypto";
import { existsSync, statSync, writeFileSync } from "node:fs";
import path from "node:path";
import { pino } from "pino";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CertAuthority } from "../../src/certs/devca.ts";
import { bootstrapIdentity } from "../../src/certs/enrol.ts";
import { EstClient } from "../../src/certs/est.ts";
import { createCsr } from "../../src/certs/identity.ts";
import { keyPairFromPem, signingAlgorithmFor, x509 } from "../../src/certs/x509.ts";
import { startDevCloud, type DevCloud } from "../../src/devcloud/index.ts";
import { isKerfError } from "../../src/errors.ts";
import { silentLogger, type Logger } from "../../src/log.ts";
import { Transport, type ClientIdentity } from "../../src/uplink/transport.ts";
import { postOnce } from "./ingest.ts";
import { clientIdentity, runCleanups, tempDir, type Cleanups } from "../uplink/helpers.ts";

let dir: string;
let cloud: DevCloud;
let logLines: string[];
let logger: Logger;
const cleanups: Cleanups = [];

beforeEach(async () => {
  const tmp = await tempDir("kerf-est-");
  dir = tmp.dir;
  cleanups.push(tmp.remove);
  // a working identity is shown by a plain mutual-TLS ingest request, without an access token
  cloud = await startDevCloud({ dir: path.join(dir, "devcloud"), logger: silentLogger(), requireTokens: false });
  cleanups.push(() => cloud.stop());
  logLines = [];
  logger = pino({ level: "debug" }, { write: (line: string) => void logLines.push(line) }) as unknown as Logger;
});
afterEach(() => runCleanups(cleanups));

const day = 86_400_000;

function tokenFile(token: string, name = "token"): string {
  const file = path.join(dir, name);
  writeFileSync(file, token + "\n", { mode: 0o600 });
  return file;
}

function bootstrap(o: { instance?: string; idDir?: string; tokenFile: string | undefined; keyType?: "ec" | "rsa" }) {
  return bootstrapIdentity({
    dir: o.idDir ?? path.join(dir, "identity"),
    instance: o.instance ?? "line-1",
    url: cloud.est.url,
    tokenFile: o.tokenFile,
    keyType: o.keyType ?? "ec",
    pins: [cloud.pin],
    caPem: cloud.ca.certPem,
    logger,
  });
}

async function refusal(p: Promise<unknown>, code = "CERT_ENROLMENT"): Promise<string> {
  const err = await p.then(
    () => null,
    (e: unknown) => e,
  );
  expect(isKerfError(err), String(err)).toBe(true);
  expect((err as { code: string }).code, (err as Error).message).toBe(code);
  return (err as Error).message;
}

function transport(identity?: ClientIdentity): Transport {
  const t = new Transport({ ...identity, pins: [cloud.pin], caPem: cloud.ca.certPem, logger: silentLogger(), connections: 1 });
  cleanups.push(() => t.close());
  return t;
}

/** One ingest POST with this identity: the status the devcloud answered. */
function ingest(identity: ClientIdentity): Promise<number> {
  return postOnce(transport(identity), cloud.url, "line-1", 1);
}

describe("EST bootstrap enrolment", () => {
  it("enrols with a one-time token: a 0600 key that is never logged, a checked certificate, a working mTLS request", async () => {
    const id = await bootstrap({ tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-1")) });
    expect(statSync(id.keyFile).mode & 0o777).toBe(0o600);
    expect(createPrivateKey(id.keyPem).asymmetricKeyDetails?.namedCurve).toBe("prime256v1");
    const cert = new X509Certificate(id.certPem);
    expect(cert.subject).toBe("CN=line-1");
    expect(cert.subjectAltName).toBe("URI:urn:kerf:line-1");
    expect(cert.checkIssued(new X509Certificate(cloud.ca.certPem))).toBe(true);
    expect(cloud.est.counts.enrolled).toBe(1);
    expect(await ingest(id)).toBe(200);
    expect(cloud.clientCertificates.get(cert.serialNumber)).toBe(1);
    // The key never reaches the log; its public pin and the instance id do.
    const log = logLines.join("");
    const keyBody = id.keyPem.replace(/-----[^-]+-----|\s/g, "");
    expect(log).toContain(id.instanceId);
    expect(log).not.toContain("PRIVATE KEY");
    for (let i = 0; i + 24 <= keyBody.length; i += 24) expect(log).not.toContain(keyBody.slice(i, i + 24));
    // A second start finds the identity and spends nothing.
    const again = await bootstrap({ tokenFile: undefined });
    expect(again.certPem).toBe(id.certPem);
    expect(cloud.est.counts.enrolled).toBe(1);
  });

  it("enrols an RSA key when keyType is rsa", async () => {
    const id = await bootstrap({ tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-1")), keyType: "rsa" });
    expect(createPrivateKey(id.keyPem).asymmetricKeyType).toBe("rsa");
    expect(await ingest(id)).toBe(200);
  });

  it("refuses a reused token: at the cloud (counted as a failed attempt) and locally without presenting it again", async () => {
    const file = tokenFile(cloud.est.issueBootstrapToken("line-1"));
    await bootstrap({ tokenFile: file });
    // Another installation with a copy of the same token.
    const msg = await refusal(bootstrap({ tokenFile: file, idDir: path.join(dir, "other") }));
    expect(msg).toMatch(/HTTP 401: this bootstrap token was already used for instance 'line-1': failed attempt 1 of 5; 4 attempts remain before lockout/);
    expect(msg).toMatch(/new bootstrap token .*kerf enroll --token-file/);
    expect(existsSync(path.join(dir, "other", "client.pem"))).toBe(false);
    // The instance that spent it does not present it again after its certificate is gone.
    const refusedBefore = cloud.est.counts.refused;
    writeFileSync(path.join(dir, "identity", "client.pem"), "");
    const local = await refusal(bootstrap({ tokenFile: file }));
    expect(local).toMatch(/bootstrap token in .* was already used by this instance and is not presented again/);
    expect(cloud.est.counts.refused).toBe(refusedBefore);
  });

  it("gives one certificate for one token, also to installations racing with copies of it", async () => {
    const file = tokenFile(cloud.est.issueBootstrapToken("line-1"));
    const results = await Promise.allSettled([1, 2, 3].map((i) => bootstrap({ tokenFile: file, idDir: path.join(dir, `racer-${i}`) })));
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    expect(cloud.est.counts.enrolled).toBe(1);
    for (const r of results) if (r.status === "rejected") expect(String(r.reason)).toMatch(/this bootstrap token was already used for instance 'line-1'/);
  });

  it("keeps the token when the request fails before a certificate is issued", async () => {
    const file = tokenFile(cloud.est.issueBootstrapToken("line-1"));
    cloud.est.faults.failNext = 1;
    await refusal(bootstrap({ tokenFile: file }));
    const identity = await bootstrap({ tokenFile: file });
    expect(identity.certPem).toContain("BEGIN CERTIFICATE");
  });

  it("locks an instance out after 5 wrong tokens, saying which attempt it was; a new token from the administrator lifts it", async () => {
    const good = tokenFile(cloud.est.issueBootstrapToken("line-1"), "good");
    const messages: string[] = [];
    for (let i = 1; i <= 6; i++) messages.push(await refusal(bootstrap({ tokenFile: tokenFile(`wrong-${i}`, `wrong-${i}`) })));
    for (let i = 1; i <= 4; i++) expect(messages[i - 1]).toMatch(new RegExp(`HTTP 401: wrong bootstrap token for instance 'line-1': failed attempt ${i} of 5; ${5 - i} attempts? remain before lockout`));
    expect(messages[4]).toMatch(/failed attempt 5 of 5; instance 'line-1' is now locked out; the cloud administrator must issue a new bootstrap token \(devcloud: kerf devcloud --issue-token line-1\)/);
    expect(messages[5]).toMatch(/HTTP 403: instance 'line-1' is locked out after 5 failed bootstrap attempts; the cloud administrator must issue a new bootstrap token .* then run kerf enroll --token-file FILE/);
    // Locked out: even the right token is refused now.
    expect(await refusal(bootstrap({ tokenFile: good }))).toMatch(/HTTP 403: instance 'line-1' is locked out/);
    expect(cloud.est.counts.enrolled).toBe(0);
    // Another instance is not affected.
    await bootstrap({ instance: "line-2", idDir: path.join(dir, "line-2"), tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-2"), "t2") });
    // A new token lifts the lockout.
    const id = await bootstrap({ tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-1"), "new") });
    expect(await ingest(id)).toBe(200);
  });

  it("does not present a refused token again on a restart (kerf run), so a restart loop cannot lock the instance out; kerf enroll may", async () => {
    const wrong = tokenFile("not-the-token", "wrong");
    expect(await refusal(bootstrap({ tokenFile: wrong }))).toMatch(/failed attempt 1 of 5/);
    const refusedByCloud = cloud.est.counts.refused;
    for (let restart = 0; restart < 6; restart++) {
      const msg = await refusal(bootstrap({ tokenFile: wrong }));
      expect(msg).toMatch(/the cloud refused the bootstrap token in .*wrong at an earlier start \(.*failed attempt 1 of 5.*\); kerf run does not present it again/);
      expect(msg).not.toContain("not-the-token");
    }
    expect(cloud.est.counts.refused).toBe(refusedByCloud);
    // the operator's deliberate retry goes to the cloud and counts there
    const again = await refusal(bootstrapIdentity({ dir: path.join(dir, "identity"), instance: "line-1", url: cloud.est.url, tokenFile: wrong, keyType: "ec", pins: [cloud.pin], caPem: cloud.ca.certPem, retryRefusedToken: true, logger }));
    expect(again).toMatch(/failed attempt 2 of 5/);
    // a new token is presented at once
    expect((await bootstrap({ tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-1"), "new") })).certPem).toContain("BEGIN CERTIFICATE");
  });

  it("is pinned like the ingest: a cloud key that is not pinned gets no request, and the token stays unspent", async () => {
    const file = tokenFile(cloud.est.issueBootstrapToken("line-1"));
    const otherPin = "sha256/" + Buffer.alloc(32, 7).toString("base64");
    const err = await bootstrapIdentity({ dir: path.join(dir, "identity"), instance: "line-1", url: cloud.est.url, tokenFile: file, keyType: "ec", pins: [otherPin], caPem: cloud.ca.certPem, logger }).catch((e: unknown) => e as Error);
    expect(isKerfError(err, "UPLINK_PIN_MISMATCH"), String(err)).toBe(true);
    expect((err as Error).message).toMatch(/^the cloud at '127\.0\.0\.1' presented no pinned key: .*Nothing was sent/);
    expect(cloud.est.counts).toEqual({ enrolled: 0, reenrolled: 0, refused: 0 });
    // The token still works with the right pin.
    expect(await ingest(await bootstrap({ tokenFile: file }))).toBe(200);
  });

  it("without a token file says how to get one", async () => {
    const msg = await refusal(bootstrap({ tokenFile: undefined }));
    expect(msg).toMatch(/instance 'line-1' has no certificate yet .*bootstrap token: ask the cloud administrator .*kerf enroll --token-file FILE, or set cloud.enrolment.tokenFile/);
  });

  it("after an expired certificate, says so and the way back; a new token enrols again with the same key", async () => {
    const first = await bootstrap({ tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-1")) });
    const publicKeyPem = createPublicKey(first.keyPem).export({ type: "spki", format: "pem" }) as string;
    writeFileSync(first.certFile, await cloud.ca.issueClientCert({ instance: "line-1", publicKeyPem, notBefore: new Date(Date.now() - 10 * day), notAfter: new Date(Date.now() - day) }));
    const msg = await refusal(bootstrap({ tokenFile: path.join(dir, "token") }), "CERT_EXPIRED");
    expect(msg).toMatch(/the instance certificate .*client\.pem expired on \d{4}-.*the bootstrap token in .* was already used .*kerf enroll --token-file FILE/);
    const noToken = await refusal(bootstrap({ tokenFile: undefined }), "CERT_EXPIRED");
    expect(noToken).toMatch(/expired on .*kerf enroll --token-file/);
    const renewed = await bootstrap({ tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-1"), "new") });
    expect(renewed.keyPem).toBe(first.keyPem);
    expect(renewed.instanceId).toBe(first.instanceId);
    expect(await ingest(renewed)).toBe(200);
  });
});

describe("the client refuses what it should not install", () => {
  async function refusedAnswer(answer: (csrPem: string, issued: string) => Promise<string>, pattern: RegExp) {
    cloud.est.faults.answer = (_op, csrPem, issued) => answer(csrPem, issued);
    const msg = await refusal(bootstrap({ tokenFile: tokenFile(cloud.est.issueBootstrapToken("line-1")) }));
    expect(msg).toMatch(/the EST server issued a certificate that Kerf refuses: /);
    expect(msg).toMatch(pattern);
    expect(msg).toMatch(/nothing was installed/);
    expect(existsSync(path.join(dir, "identity", "client.pem"))).toBe(false);
  }

  it("a certificate for another key", async () => {
    const other = generateKeyPairSync("ec", { namedCurve: "P-256" }).publicKey.export({ type: "spki", format: "pem" }) as string;
    await refusedAnswer(() => cloud.ca.issueClientCert({ instance: "line-1", publicKeyPem: other }), /none of the 1 certificate\(s\) returned is for the key of the request/);
  });

  it("a certificate for another subject", async () => {
    await refusedAnswer((csrPem) => cloud.ca.issueClientCert({ instance: "line-2", csrPem }), /its subject is 'CN=line-2', the request asked for CN=line-1/);
  });

  it("a certificate with another SAN", async () => {
    await refusedAnswer(async (csrPem) => {
      const keys = await keyPairFromPem(cloud.ca.keyPem);
      const cert = await x509.X509CertificateGenerator.create({
        subject: "CN=line-1",
        issuer: new X509Certificate(cloud.ca.certPem).subject,
        publicKey: new x509.Pkcs10CertificateRequest(csrPem).publicKey,
        signingKey: keys.privateKey,
        signingAlgorithm: signingAlgorithmFor(keys.privateKey),
        notBefore: new Date(Date.now() - 60_000),
        notAfter: new Date(Date.now() + day),
        extensions: [new x509.SubjectAlternativeNameExtension([{ type: "url", value: "urn:kerf:line-9" }])],
      });
      return cert.toString("pem");
    }, /its SAN URIs are \[urn:kerf:line-9\], the request asked for \[urn:kerf:line-1\]/);
  });

  it("a chain that does not verify to the EST CA certificates", async () => {
    const rogue = await CertAuthority.createRoot("CN=Rogue CA");
    await refusedAnswer((csrPem) => rogue.issueClientCert({ instance: "line-1", csrPem }), /its chain does not verify to the EST CA certificates \(issuer 'CN=Rogue CA'/);
  });

  it("a certificate that has already expired", async () => {
    await refusedAnswer((csrPem) => cloud.ca.issueClientCert({ instance: "line-1", csrPem, notBefore: new Date(Date.now() - 2 * day), notAfter: new Date(Date.now() - day) }), /it expired on/);
  });
});

describe("/simplereenroll demands the current certificate of the same instance", () => {
  async function reenroll(identity: ClientIdentity | undefined, instance = "line-1") {
    const { privateKey } = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const csr = await createCsr(privateKey.export({ type: "pkcs8", format: "pem" }) as string, instance);
    return new EstClient({ url: cloud.est.url, dispatcher: transport(identity) }).reenroll(csr);
  }

  it("without a client certificate", async () => {
    expect(await refusal(reenroll(undefined))).toMatch(/refused \/simplereenroll with HTTP 401: \/simplereenroll needs the current client certificate/);
  });

  it("with a certificate from another CA", async () => {
    const foreign = await clientIdentity(await CertAuthority.createRoot("CN=Foreign CA"), "line-1");
    expect(await refusal(reenroll(foreign))).toMatch(/HTTP 403: the client certificate is not accepted for renewal/);
  });

  it("with an expired certificate from its CA", async () => {
    const old = await clientIdentity(cloud.ca, "line-1", { notBefore: new Date(Date.now() - 2 * day), notAfter: new Date(Date.now() - day) });
    expect(await refusal(reenroll(old))).toMatch(/HTTP 403: the client certificate is not accepted for renewal: CERT_HAS_EXPIRED/);
  });

  it("with the certificate of another instance", async () => {
    const other = await clientIdentity(cloud.ca, "line-2");
    expect(await refusal(reenroll(other))).toMatch(/HTTP 403: the request names CN=line-1, but the client certificate is for instance 'line-2'/);
  });

  it("and issues with the current one", async () => {
    const current = await clientIdentity(cloud.ca, "line-1");
    const chain = await reenroll(current);
    expect(new X509Certificate(chain).subject).toBe("CN=line-1");
    expect(cloud.est.counts.reenrolled).toBe(1);
  });
});

it("reads the token file as a secret: a missing one is named", async () => {
  const msg = await refusal(bootstrap({ tokenFile: path.join(dir, "nope.token") }), "SECRET_MISSING");
  expect(msg).toMatch(/cannot read the bootstrap token file .*nope\.token: ENOENT/);
  // Nothing was presented to the cloud.
  expect(cloud.est.counts.refused + cloud.est.counts.enrolled).toBe(0);
});
