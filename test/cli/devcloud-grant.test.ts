import { expect, it } from "vitest";
import { findGrant, SERVICE_APP } from "../../src/devcloud/grants.ts";
import { tempDir } from "../helpers/env.ts";
import { kerf } from "./helpers.ts";

// The machine owner's administrator grants a partner app scopes on a connector (issue 16).
it("kerf devcloud --grant records, replaces and revokes a grant, and refuses an unknown app or scope", async () => {
  const tmp = await tempDir();
  try {
    const dir = `${tmp.dir}/devcloud`;
    const granted = await kerf(["devcloud", "--state-dir", tmp.dir, "--grant", SERVICE_APP, "--connector", "saw-7", "--scope", "machines:read machines:write"]);
    expect(granted.stdout).toBe(`granted: ${SERVICE_APP} on saw-7: machines:read machines:write\n`);
    expect(findGrant(dir, SERVICE_APP, "saw-7")?.scopes).toEqual(["machines:read", "machines:write"]);
    await kerf(["devcloud", "--state-dir", tmp.dir, "--grant", SERVICE_APP, "--connector", "saw-7", "--scope", "machines:read"]);
    expect(findGrant(dir, SERVICE_APP, "saw-7")?.scopes).toEqual(["machines:read"]);
    const revoked = await kerf(["devcloud", "--state-dir", tmp.dir, "--grant", SERVICE_APP, "--connector", "saw-7", "--scope", ""]);
    expect(revoked.stdout).toBe(`revoked: ${SERVICE_APP} on saw-7\n`);
    expect(findGrant(dir, SERVICE_APP, "saw-7")).toBeUndefined();
    const unknownApp = await kerf(["devcloud", "--state-dir", tmp.dir, "--grant", "nobody", "--connector", "saw-7", "--scope", "machines:read"]);
    expect(unknownApp.code).not.toBe(0);
    expect(unknownApp.stderr).toMatch(/no partner app 'nobody'/);
    const badScope = await kerf(["devcloud", "--state-dir", tmp.dir, "--grant", SERVICE_APP, "--connector", "saw-7", "--scope", "machines:everything"]);
    expect(badScope.code).not.toBe(0);
    expect(badScope.stderr).toMatch(/unknown scope 'machines:everything'/);
  } finally {
    await tmp.cleanup();
  }
}, 60_000);
