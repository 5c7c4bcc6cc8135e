import path from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parseListen } from "../../src/config/listen.ts";
import { CLOUD, GOOD_CONFIG, lines, load, loadError, tempDir, type TempDir } from "../config/helpers.ts";

describe("status.listen: loopback or a Unix socket, nothing reachable", () => {
  it("accepts loopback addresses and absolute socket paths", () => {
    expect(parseListen("127.0.0.1:9464")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 9464 });
    expect(parseListen("127.0.0.1:0")).toEqual({ kind: "tcp", host: "127.0.0.1", port: 0 });
    expect(parseListen("[::1]:9464")).toEqual({ kind: "tcp", host: "::1", port: 9464 });
    expect(parseListen("unix:/run/kerf/status.sock")).toEqual({ kind: "unix", path: "/run/kerf/status.sock" });
  });

  it.each([
    ["0.0.0.0:9464", /0\.0\.0\.0 is not a loopback address/],
    ["[::]:9464", /:: is not a loopback address/],
    ["192.168.1.20:9464", /192\.168\.1\.20 is not a loopback address/],
    ["localhost:9464", /not an IP address/],
    [":9464", /not an address with a port/],
    ["127.0.0.1", /not an address with a port/],
    ["127.0.0.1:70000", /above 65535/],
    ["unix:status.sock", /not absolute/],
  ])("refuses %s", (value, reason) => {
    const r = parseListen(value);
    expect(typeof r).toBe("string");
    expect(r).toMatch(reason);
  });

  describe("in the config", () => {
    let t: TempDir;
    beforeEach(async () => (t = await tempDir()));
    afterEach(() => t.cleanup());

    it("names file, line and field for 0.0.0.0", async () => {
      const err = await loadError(t, `${GOOD_CONFIG}status:\n  listen: "0.0.0.0:9464"\n`);
      const found = lines(err, t.dir).filter((l) => l.includes("status.listen"));
      expect(found).toHaveLength(1);
      expect(found[0]).toMatch(/^kerf\.yaml:\d+:\d+: status\.listen: 0\.0\.0\.0 is not a loopback address.*found "0\.0\.0\.0:9464".*127\.0\.0\.1:PORT/);
    });

    it("takes a metrics file ending in .prom, relative to the config's directory", async () => {
      const loaded = await load(t, `${GOOD_CONFIG}status:\n  metricsFile: ./textfile/kerf.prom\n`);
      expect(loaded.config.status.metricsFile).toBe(path.join(t.dir, "textfile", "kerf.prom"));
      const err = await loadError(t, `${GOOD_CONFIG}status:\n  metricsFile: ./kerf.txt\n`);
      expect(lines(err, t.dir)).toEqual([expect.stringMatching(/^kerf\.yaml:\d+:\d+: status\.metricsFile: not a \.prom file \(found "\.\/kerf\.txt"; expected a file name ending in \.prom/)]);
    });

    it("defaults to no endpoint and a metrics file every 5 s", async () => {
      const loaded = await load(t, GOOD_CONFIG);
      expect(loaded.config.status).toEqual({ metricsIntervalSeconds: 5 });
      const listening = await load(t, `${GOOD_CONFIG.replace(CLOUD, "")}${CLOUD}status: { listen: "unix:/tmp/kerf.sock" }\n`);
      expect(listening.config.status.listen).toBe("unix:/tmp/kerf.sock");
    });
  });
});
