import { copyFileSync, readdirSync } from "node:fs";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { silentLogger } from "../../../src/log.ts";
import { openClientPki, reconcileTrust } from "../../../src/opcua/trust/pki.ts";
import { tempDir } from "../../helpers/env.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

it("a certificate in both trusted/ and rejected/ (a refusal racing the operator's accept) ends up trusted", async () => {
  const tmp = await tempDir();
  cleanups.push(tmp.cleanup);
  const server = await openClientPki({ dir: path.join(tmp.dir, "server"), instance: "some-server", logger: silentLogger() });
  cleanups.push(() => server.certificateManager.dispose());
  const pki = await openClientPki({ dir: path.join(tmp.dir, "pki"), instance: "reconcile", logger: silentLogger() });
  cleanups.push(() => pki.certificateManager.dispose());
  const cm = pki.certificateManager;

  await cm.trustCertificate(server.certificateDer);
  // The racing refusal's copy, written after the move.
  copyFileSync(server.certificateFile, path.join(cm.rejectedFolder, "racing-copy.pem"));
  await cm.rejectCertificate(server.certificateDer);
  copyFileSync(server.certificateFile, path.join(cm.trustedFolder, "operator-accepted.pem"));
  expect(readdirSync(cm.rejectedFolder).length).toBeGreaterThan(0);

  await reconcileTrust(cm);
  expect(await cm.isCertificateTrusted(server.certificateDer)).toBe("Good");
  expect(readdirSync(cm.rejectedFolder)).toEqual([]);
});
