/** cloud.proxy: the URL's form, the credential files as secrets, and errors at the line that names them. */
import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { GOOD_CONFIG, lines, load, loadError, tempDir, type TempDir } from "./helpers.ts";

let t: TempDir;
beforeEach(async () => {
  t = await tempDir();
});
afterEach(async () => {
  await t.cleanup();
});

/** GOOD_CONFIG with `proxy` (indented two spaces, under cloud) from line 9 on. */
const withProxy = (proxy: string) => `${GOOD_CONFIG}${proxy}`;

describe("cloud.proxy", () => {
  it("loads the URL and reads user name and password files into secrets, never into the config", async () => {
    await t.write("secrets/proxy-user", "kerf-line-1\n", 0o600);
    await t.write("secrets/proxy-password", "pa:ss word\n", 0o600);
    const loaded = await load(t, withProxy("  proxy: { url: http://proxy.corp:3128, usernameFile: secrets/proxy-user, passwordFile: secrets/proxy-password }\n"));
    expect(loaded.config.cloud.proxy).toEqual({ url: "http://proxy.corp:3128", usernameFile: path.join(t.dir, "secrets/proxy-user"), passwordFile: path.join(t.dir, "secrets/proxy-password") });
    expect(loaded.secrets.proxy?.username.reveal()).toBe("kerf-line-1");
    expect(loaded.secrets.proxy?.password.reveal()).toBe("pa:ss word");
    expect(JSON.stringify(loaded)).not.toContain("pa:ss word");
    expect(loaded.warnings).toEqual([]);
  });

  it("is optional, and works without credentials", async () => {
    expect((await load(t, GOOD_CONFIG)).config.cloud.proxy).toBeUndefined();
    const loaded = await load(t, withProxy("  proxy: { url: \"https://[::1]:8443\" }\n"));
    expect(loaded.config.cloud.proxy).toEqual({ url: "https://[::1]:8443" });
    expect(loaded.secrets.proxy).toBeUndefined();
  });

  it("refuses credentials in the URL, a URL without port, another scheme, and half the credentials", async () => {
    for (const url of ["http://user:pw@proxy.corp:3128", "http://proxy.corp", "socks5://proxy.corp:1080", "http://proxy.corp:3128/path"]) {
      const err = await loadError(t, withProxy(`  proxy: { url: "${url}" }\n`));
      const shown = url.replace("user:pw@", "***@");
      expect(lines(err, t.dir)).toEqual([
        `kerf.yaml:9:17: cloud.proxy.url: not a proxy URL (found "${shown}"; expected http://host:port or https://host:port, without user, password or path)`,
      ]);
      // the password is in neither the message nor the lines printed under it
      expect([err.message, ...(err.details ?? [])].join("\n")).not.toContain("pw@");
    }
    await t.write("pw", "x", 0o600);
    const err = await loadError(t, withProxy("  proxy: { url: http://proxy.corp:3128, passwordFile: pw }\n"));
    expect(lines(err, t.dir)).toEqual([
      "kerf.yaml:9:10: cloud.proxy.usernameFile: usernameFile is missing (found only passwordFile; expected both for Basic authentication, or neither)",
    ]);
  });

  it("names the unreadable or empty credential file, and warns about a password file others can read", async () => {
    await t.write("user", "", 0o600);
    const err = await loadError(t, withProxy("  proxy: { url: http://proxy.corp:3128, usernameFile: user, passwordFile: missing }\n"));
    expect(lines(err, t.dir)).toEqual([
      `kerf.yaml:9:55: cloud.proxy.usernameFile: the proxy user name file is empty (found "user"; expected the proxy user name)`,
      `kerf.yaml:9:75: cloud.proxy.passwordFile: cannot read the proxy password file (found "missing": no such file; expected a readable file)`,
    ]);
    await t.write("user", "u", 0o600);
    await t.write("missing", "p", 0o644);
    const loaded = await load(t, withProxy("  proxy: { url: http://proxy.corp:3128, usernameFile: user, passwordFile: missing }\n"));
    expect(loaded.warnings.map((w) => w.replace(t.dir + path.sep, ""))).toEqual([
      "kerf.yaml:9:75: cloud.proxy.passwordFile: the proxy password file can be read by other users (found mode 0644; expected 0600 or 0400)",
    ]);
  });
});

