import { existsSync } from "node:fs";
import path from "node:path";
import { KerfError } from "../errors.ts";
import { daysLeft, derCopy, EXPIRY_WARNING_DAYS, readSlotInfo, readStaged, stageRenewal, type AppCertificate } from "../opcua/trust/app-cert.ts";
import { formatValidity } from "../opcua/trust/cert-checks.ts";
import { parseCli, UsageError } from "./args.ts";
import { ensureConnectorPki } from "./connector-pki.ts";
import { configOption, stateDirOption } from "./state-dir.ts";

export const usage = `usage: kerf pki <command> [--state-dir DIR] [--config FILE]

The connector's own OPC UA application certificate (what machines must trust), in
<state-dir>/pki/own (default state dir /var/lib/kerf, or $KERF_STATE_DIR).

commands:
  status              the current certificate (thumbprint, validity, days left), a staged
                      renewal and the previous certificate
  renew [--replace]   make a new certificate and key beside the current ones and print the
                      SHA-1 thumbprint to trust on each machine, and the file to copy there.
                      The connector keeps using the current certificate; on each machine it
                      tries the new one (at its next connection, and every 2 minutes beside a
                      running session) and moves to it as soon as the machine accepts it. Once
                      every machine has connected with it, it becomes the current certificate
                      and the old one is kept as client_certificate.previous.pem.
                      --replace makes another one when a renewal is already staged.

The connector warns (log and kerf health) ${EXPIRY_WARNING_DAYS} days before the certificate expires.
`;

/** `kerf pki status | renew`: the connector's OPC UA application certificate and its renewal. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(argv, { "state-dir": { type: "string" }, config: { type: "string" }, replace: { type: "boolean" } }, "pki", usage);
  const [command, ...extra] = positionals;
  if (command === undefined) throw new UsageError("pki: missing the command (status or renew)", usage);
  if (extra.length > 0) throw new UsageError(`pki ${command}: unexpected argument '${extra[0]}'`, usage);
  const stateDir = stateDirOption(values["state-dir"]);
  const root = path.join(stateDir, "pki");
  switch (command) {
    case "status": {
      if (!existsSync(path.join(root, "own/certs/client_certificate.pem"))) {
        throw new KerfError("STATE_DIR", `no OPC UA application certificate in ${path.join(root, "own")}`, {
          details: ["expected the connector's state directory in --state-dir (or KERF_STATE_DIR); kerf run creates the certificate on first start"],
        });
      }
      const current = readSlotInfo(root, "current")!;
      process.stdout.write(describe("current ", current));
      const staged = readStaged(root);
      if (staged) process.stdout.write(describe("staged  ", staged) + "          waiting until every machine has connected with it (kerf health shows which have)\n");
      const previous = readSlotInfo(root, "previous");
      if (previous) process.stdout.write(describe("previous", previous));
      return 0;
    }
    case "renew": {
      await ensureConnectorPki(stateDir, configOption(values.config));
      const existing = readStaged(root);
      if (existing && !values.replace) {
        process.stdout.write(`a renewal is staged already (kerf pki renew --replace makes another one):\n`);
        process.stdout.write(instructions(existing));
        return 0;
      }
      const staged = await stageRenewal(root);
      process.stdout.write(`staged a new OPC UA application certificate beside the current one (which stays in use for now):\n`);
      process.stdout.write(instructions(staged));
      return 0;
    }
    default:
      throw new UsageError(`pki: unknown command '${command}' (expected status or renew)`, usage);
  }
}

function describe(label: string, cert: AppCertificate): string {
  const left = daysLeft(cert.info);
  const when = left < 0 ? "EXPIRED" : `${left} days left`;
  return `${label}  thumbprint ${cert.info.thumbprint}  valid ${formatValidity(cert.info)} (${when})  ${cert.certificateFile}\n`;
}

function instructions(cert: AppCertificate): string {
  return [
    `  thumbprint (SHA-1)  ${cert.info.thumbprint}`,
    `  subject             ${cert.info.subject}`,
    ...(cert.info.applicationUri ? [`  applicationUri      ${cert.info.applicationUri}`] : []),
    `  valid               ${formatValidity(cert.info)}`,
    `  file                ${cert.certificateFile} (DER: ${derCopy(cert.certificateFile)})`,
    `On each machine, add this certificate to the trusted client (application) certificates`,
    `(copy the file, or accept it where the machine lists refused certificates: the connector`,
    `presents it within 2 minutes) and compare the thumbprint. The connector moves to it on each`,
    `machine that accepts it; once all have, it becomes the current certificate.`,
    "",
  ].join("\n");
}
