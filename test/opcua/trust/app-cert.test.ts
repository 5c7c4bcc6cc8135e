import { X509Certificate, createPrivateKey } from "node:crypto";
import { copyFileSync, existsSync, readFileSync, renameSync, rmSync, utimesSync, writeFileSync } from "node:fs";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { isKerfError } from "../../../src/errors.ts";
import { silentLogger } from "../../../src/log.ts";
import { ApplicationCertificate, slotFiles, stageRenewal } from "../../../src/opcua/trust/app-cert.ts";
import { openClientPki } from "../../../src/opcua/trust/pki.ts";
import { tempDir } from "../../helpers/env.ts";

const cleanups: (() => Promise<unknown>)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

async function pkiRoot(): Promise<string> {
  const tmp = await tempDir();
  cleanups.push(tmp.cleanup);
  const pki = await openClientPki({ dir: path.join(tmp.dir, "pki"), instance: "line-7", logger: silentLogger() });
  await pki.certificateManager.dispose();
  return pki.certificateManager.rootDir;
}

const pairMatches = (files: { certificateFile: string; privateKeyFile: string }) =>
  new X509Certificate(readFileSync(files.certificateFile)).checkPrivateKey(createPrivateKey(readFileSync(files.privateKeyFile)));

describe("the application certificate's files", () => {
  it("a renewal keeps the subject, applicationUri and names of the current certificate, with a new RSA key", async () => {
    const root = await pkiRoot();
    const current = new ApplicationCertificate(root, silentLogger()).current;
    const staged = await stageRenewal(root);
    expect(staged.info.subject).toBe(current.info.subject);
    expect(staged.info.applicationUri).toBe("urn:kerf:line-7");
    expect(staged.info.dnsNames).toEqual(current.info.dnsNames);
    expect(staged.info.thumbprint).not.toBe(current.info.thumbprint);
    expect(createPrivateKey(staged.keyPem).asymmetricKeyType).toBe("rsa");
    expect(staged.keyPem).not.toBe(current.keyPem);
    expect(pairMatches(slotFiles(root, "next"))).toBe(true);
  });

  it("a promotion cut short between its two renames (new key, old certificate) is completed at the next start", async () => {
    const root = await pkiRoot();
    const staged = await stageRenewal(root);
    const next = slotFiles(root, "next");
    const current = slotFiles(root, "current");
    // the state a SIGKILL after the key's rename leaves
    renameSync(next.privateKeyFile, current.privateKeyFile);
    expect(pairMatches(current)).toBe(false);

    const own = new ApplicationCertificate(root, silentLogger());
    expect(own.current.info.thumbprint).toBe(staged.info.thumbprint);
    expect(pairMatches(current)).toBe(true);
    expect(existsSync(next.certificateFile)).toBe(false);
  });

  it("a half-written renewal (a new key beside an older certificate) is not taken for a staged one; a mismatched current pair is a clear error", async () => {
    const root = await pkiRoot();
    await stageRenewal(root);
    const next = slotFiles(root, "next");
    const current = slotFiles(root, "current");
    const own = new ApplicationCertificate(root, silentLogger());
    expect(own.staged()).not.toBeNull();
    // kerf pki renew --replace has written its key and not yet its certificate
    const stagedKey = readFileSync(next.privateKeyFile);
    copyFileSync(current.privateKeyFile, next.privateKeyFile);
    utimesSync(next.certificateFile, new Date(), new Date(Date.now() + 5_000));
    expect(own.staged()).toBeNull();
    expect(new ApplicationCertificate(root, silentLogger()).staged()).toBeNull();
    writeFileSync(next.privateKeyFile, stagedKey);
    rmSync(next.certificateFile);

    renameSync(next.privateKeyFile, current.privateKeyFile);
    let error: unknown;
    try {
      new ApplicationCertificate(root, silentLogger());
    } catch (err) {
      error = err;
    }
    expect(isKerfError(error, "CERT_KEY_MISMATCH")).toBe(true);
    expect((error as Error).message).toBe(`${current.certificateFile} is not the certificate of ${current.privateKeyFile}`);
  });
});
