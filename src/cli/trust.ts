import { existsSync } from "node:fs";
import path from "node:path";
import { OPCUACertificateManager } from "node-opcua-certificate-manager";
import { KerfError } from "../errors.ts";
import { formatValidity, validityProblem, type CertificateInfo } from "../opcua/trust/cert-checks.ts";
import { acceptCertificate, addCrlFile, addIssuerFile, readTrustStore, rejectCertificate, type StoredCertificate, type StoredCrl } from "../opcua/trust/store.ts";
import { parseCli, UsageError } from "./args.ts";
import { ensureConnectorPki } from "./connector-pki.ts";
import { configOption, stateDirOption } from "./state-dir.ts";

export const usage = `usage: kerf trust <command> [--state-dir DIR] [--config FILE]

commands:
  list [--json]                   trusted, rejected and issuer certificates, and CRLs
  accept <thumbprint>             trust a refused server certificate (moves it out of rejected/)
  reject <thumbprint>             stop trusting a server certificate
  add-issuer <file> [--trusted]   add a CA certificate (PEM or DER); --trusted: trust every
                                  certificate it issues
  add-crl <file>                  add a CA's certificate revocation list (PEM or DER)

The trust store is the connector's, in <state-dir>/pki (default state dir /var/lib/kerf, or
$KERF_STATE_DIR). A thumbprint is the certificate's SHA-1, as in the connector's error
messages; its first 8 or more hex digits do when they are unambiguous. A running connector
sees the change at its next connection attempt. On a new install the commands that change the
store create it first, with the connector's certificate, as kerf run would; the certificate
names the instance id of the config (--config FILE, default $KERF_CONFIG or /etc/kerf/kerf.yaml).
`;

/** `kerf trust list | accept | reject | add-issuer | add-crl`: the OPC UA trust store. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    { "state-dir": { type: "string" }, config: { type: "string" }, json: { type: "boolean" }, trusted: { type: "boolean" } },
    "trust",
    usage,
  );
  const [command, arg, ...extra] = positionals;
  if (command === undefined) throw new UsageError("trust: missing the command (list, accept, reject, add-issuer or add-crl)", usage);
  if (extra.length > 0) throw new UsageError(`trust ${command}: unexpected argument '${extra[0]}'`, usage);
  const stateDir = stateDirOption(values["state-dir"]);
  const root = path.join(stateDir, "pki");
  const needArg = (what: string): string => {
    if (!arg) throw new UsageError(`trust ${command}: missing ${what}`, usage);
    return arg;
  };
  // A change on a new install starts the store, as the connector would.
  const requireStore = () => ensureConnectorPki(stateDir, configOption(values.config));

  switch (command) {
    case "list": {
      if (arg) throw new UsageError(`trust list: unexpected argument '${arg}'`, usage);
      // Listing changes nothing, so it does not create the store either.
      if (!existsSync(path.join(root, "own"))) {
        throw new KerfError("STATE_DIR", `no OPC UA trust store at ${root}`, {
          details: ["expected the connector's state directory in --state-dir (or KERF_STATE_DIR); kerf run, kerf endpoints --state-dir and the other trust commands create <state-dir>/pki"],
        });
      }
      const store = await readTrustStore(root);
      process.stdout.write(values.json ? JSON.stringify(listJson(store), null, 2) + "\n" : listText(root, store));
      return 0;
    }
    case "accept": {
      const thumbprint = needArg("the thumbprint of the certificate to trust");
      await requireStore();
      const result = await withManager(root, (cm) => acceptCertificate(cm, thumbprint));
      const what = `${result.info.thumbprint} (${result.info.subject})`;
      if (result.alreadyTrusted) process.stdout.write(`${what} was trusted already${result.removedFromRejected ? `; removed its stale copy from rejected/, which kept it refused` : ""}\n`);
      else process.stdout.write(`trusted ${what}; no copy is left in rejected/\n`);
      const dates = validityProblem(result.info);
      if (dates) process.stderr.write(`warning: ${dates}, so connections are still refused until the machine has a new certificate\n`);
      return 0;
    }
    case "reject": {
      const thumbprint = needArg("the thumbprint of the certificate to stop trusting");
      await requireStore();
      const result = await withManager(root, (cm) => rejectCertificate(cm, thumbprint));
      const what = `${result.info.thumbprint} (${result.info.subject})`;
      process.stdout.write(result.alreadyRejected ? `${what} is not trusted (it is in rejected/)\n` : `rejected ${what}: moved to rejected/; a connector already connected keeps its session until it reconnects\n`);
      return 0;
    }
    case "add-issuer": {
      const file = path.resolve(needArg("the CA certificate file"));
      await requireStore();
      const infos = await withManager(root, (cm) => addIssuerFile(cm, file, { trusted: values.trusted }));
      for (const info of infos) {
        process.stdout.write(`added issuer ${info.thumbprint} (${info.subject})${values.trusted ? ", trusted: certificates it issues are trusted" : ""}\n`);
      }
      const store = await readTrustStore(root);
      const missing = infos.filter((i) => !store.crls.some((c) => c.issuer === i.subject));
      if (missing.length > 0) process.stdout.write(`node-opcua refuses certificates of a CA without a CRL: add ${missing.length > 1 ? "their CRLs" : "its CRL"} with kerf trust add-crl <file>\n`);
      return 0;
    }
    case "add-crl": {
      const file = path.resolve(needArg("the CRL file"));
      await requireStore();
      const { crl, ca, replaced } = await addCrlFile(root, file);
      process.stdout.write(`added the CRL of ${ca.subject} (${crl.revokedSerials.length} revoked, next update ${crl.nextUpdate?.toISOString() ?? "not stated"})${replaced ? `; it replaces ${replaced} older one${replaced > 1 ? "s" : ""}` : ""}\n`);
      if (crl.nextUpdate && crl.nextUpdate < new Date()) process.stderr.write(`warning: this CRL's next update (${crl.nextUpdate.toISOString()}) has passed; get a current one from the CA\n`);
      return 0;
    }
    default:
      throw new UsageError(`trust: unknown command '${command}' (expected list, accept, reject, add-issuer or add-crl)`, usage);
  }
}

async function withManager<T>(root: string, action: (cm: OPCUACertificateManager) => Promise<T>): Promise<T> {
  // No file watchers: this process only makes one change; the running connector's watchers see it.
  const cm = new OPCUACertificateManager({ rootFolder: root, automaticallyAcceptUnknownCertificate: false, disableFileWatchers: true, keySize: 2048 });
  await cm.initialize();
  try {
    return await action(cm);
  } finally {
    await cm.dispose();
  }
}

function flags(info: CertificateInfo): string {
  const out: string[] = [];
  const dates = validityProblem(info);
  if (dates) out.push(info.notBefore > new Date() ? "NOT YET VALID" : "EXPIRED");
  if (info.isCa) out.push("CA");
  return out.length ? `  [${out.join(", ")}]` : "";
}

function listText(root: string, store: Awaited<ReturnType<typeof readTrustStore>>): string {
  const lines = [`OPC UA trust store ${root}`, ""];
  const section = (title: string, certs: StoredCertificate[], empty: string) => {
    lines.push(`${title} (${certs.length})`);
    if (certs.length === 0) lines.push(`  ${empty}`);
    for (const c of certs) {
      lines.push(`  ${c.info.thumbprint}  ${c.info.subject}${flags(c.info)}`);
      lines.push(`      applicationUri ${c.info.applicationUri ?? "(none)"}   valid ${formatValidity(c.info)}`);
    }
    lines.push("");
  };
  const by = (s: StoredCertificate["store"]) => store.certificates.filter((c) => c.store === s);
  section("trusted", by("trusted"), "none: the connector refuses every server certificate");
  section("rejected", by("rejected"), "none");
  section("issuers", by("issuers"), "none");
  lines.push(`CRLs (${store.crls.length})`);
  if (store.crls.length === 0) lines.push("  none");
  for (const c of store.crls) lines.push(...crlLines(c));
  for (const ca of store.certificates.filter((c) => c.store !== "rejected" && c.info.isCa)) {
    if (!store.crls.some((c) => c.issuer === ca.info.subject)) lines.push(`  note: no CRL for ${ca.info.subject}: certificates it issued are refused until you add one (kerf trust add-crl)`);
  }
  if (store.unreadable.length) lines.push("", `not certificates or CRLs (ignored): ${store.unreadable.join(", ")}`);
  lines.push("", by("rejected").length ? "kerf trust accept <thumbprint> trusts a rejected certificate." : "");
  return lines.join("\n").trimEnd() + "\n";
}

function crlLines(c: StoredCrl): string[] {
  const stale = c.nextUpdate && c.nextUpdate < new Date() ? "  [NEXT UPDATE PASSED]" : "";
  return [
    `  ${c.thumbprint}  issuer ${c.issuer}${stale}`,
    `      ${c.revokedSerials.length} revoked   this update ${c.thisUpdate.toISOString()}   next update ${c.nextUpdate?.toISOString() ?? "not stated"}`,
  ];
}

function listJson(store: Awaited<ReturnType<typeof readTrustStore>>) {
  const cert = (c: StoredCertificate) => ({
    thumbprint: c.info.thumbprint,
    subject: c.info.subject,
    issuer: c.info.issuer,
    applicationUri: c.info.applicationUri ?? null,
    notBefore: c.info.notBefore.toISOString(),
    notAfter: c.info.notAfter.toISOString(),
    isCa: c.info.isCa,
    file: c.file,
  });
  const by = (s: StoredCertificate["store"]) => store.certificates.filter((c) => c.store === s).map(cert);
  return {
    trusted: by("trusted"),
    rejected: by("rejected"),
    issuers: by("issuers"),
    crls: store.crls.map((c) => ({ thumbprint: c.thumbprint, issuer: c.issuer, store: c.store, thisUpdate: c.thisUpdate.toISOString(), nextUpdate: c.nextUpdate?.toISOString() ?? null, revokedSerials: c.revokedSerials, file: c.file })),
    unreadable: store.unreadable,
  };
}
