/**
 * The documented container runs (deploy/compose.yaml, deploy/kubernetes/, the README's `docker
 * run`) keep their security settings: dropping one of them (a writable root, capabilities, a
 * root user, a probe that is not `kerf health`) fails here. The ConfigMap's config loads.
 */
import { readFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { parse, parseAllDocuments } from "yaml";
import { loadConfig } from "../../src/config/load.ts";
import { tempDir, type TempDir } from "../config/helpers.ts";

const REPO = fileURLToPath(new URL("../../", import.meta.url));
const STATE = "/var/lib/kerf";
const HEALTH = ["node", "bin/kerf.js", "health", "--state-dir", STATE];

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- parsed YAML, checked field by field
type Doc = any;

function read(file: string): string {
  return readFileSync(path.join(REPO, file), "utf8");
}

function kubernetes(): Doc[] {
  return ["statefulset.yaml", "configmap.yaml", "secret.example.yaml"].flatMap((f) =>
    parseAllDocuments(read(`deploy/kubernetes/${f}`)).map((d) => {
      expect(d.errors, f).toEqual([]);
      return d.toJS() as Doc;
    }),
  );
}

describe("deploy/compose.yaml", () => {
  const compose = parse(read("deploy/compose.yaml")) as Doc;
  const services = Object.values(compose.services) as Doc[];

  it("runs each connector read-only, without capabilities or privilege gain, and with a tmpfs for TMPDIR", () => {
    expect(services.length).toBeGreaterThan(0);
    for (const s of services) {
      expect(s.read_only).toBe(true);
      expect(s.tmpfs.some((t: string) => t.split(":")[0] === "/tmp")).toBe(true);
      expect(s.cap_drop).toEqual(["ALL"]);
      expect(s.security_opt).toContain("no-new-privileges:true");
      expect(s.user === undefined || s.user !== "root").toBe(true);
      expect(s.ports, "nothing listens").toBeUndefined();
      expect(s.stop_grace_period).toBe("10s");
      expect(s.healthcheck.test).toEqual(["CMD", ...HEALTH]);
      expect(s.volumes).toContainEqual(expect.stringMatching(new RegExp(`^[^:]+:${STATE}$`)));
      expect(s.volumes.filter((v: string) => v.includes("/etc/kerf")).every((v: string) => v.endsWith(":ro"))).toBe(true);
      expect(s.secrets).toEqual(["bootstrap-token", "proxy-password", "kerf-buffer-key"]);
    }
  });
});

describe("deploy/kubernetes", () => {
  it("runs one connector per machine: a StatefulSet of one replica with its own volume claim", () => {
    const sets = kubernetes().filter((d) => d.kind === "StatefulSet");
    expect(sets).toHaveLength(1);
    const set = sets[0];
    expect(set.spec.replicas).toBe(1);
    expect(set.spec.volumeClaimTemplates.map((c: Doc) => c.metadata.name)).toEqual(["state"]);
    const [container] = set.spec.template.spec.containers;
    expect(container.volumeMounts).toContainEqual({ name: "state", mountPath: STATE });
    expect(kubernetes().some((d) => d.kind === "Service"), "nothing listens").toBe(false);
    expect(container.ports).toBeUndefined();
  });

  it("keeps the security settings: non-root, read-only root, no capabilities, no privilege escalation, a tmpfs /tmp", () => {
    const set = kubernetes().find((d) => d.kind === "StatefulSet");
    const pod = set.spec.template.spec;
    expect(pod.securityContext.runAsNonRoot).toBe(true);
    expect(pod.securityContext.runAsUser).toBeGreaterThan(0);
    expect(pod.automountServiceAccountToken).toBe(false);
    for (const c of pod.containers as Doc[]) {
      expect(c.securityContext.readOnlyRootFilesystem).toBe(true);
      expect(c.securityContext.allowPrivilegeEscalation).toBe(false);
      expect(c.securityContext.capabilities.drop).toEqual(["ALL"]);
      const tmp = c.volumeMounts.find((m: Doc) => m.mountPath === "/tmp");
      expect(pod.volumes.find((v: Doc) => v.name === tmp?.name)?.emptyDir).toBeDefined();
    }
  });

  it("probes with `kerf health` and stops within the grace period", () => {
    const pod = kubernetes().find((d) => d.kind === "StatefulSet").spec.template.spec;
    expect(pod.terminationGracePeriodSeconds).toBeGreaterThanOrEqual(10);
    const [c] = pod.containers;
    for (const probe of ["startupProbe", "livenessProbe", "readinessProbe"]) expect(c[probe]?.exec?.command, probe).toEqual(HEALTH);
  });

  it("mounts the config from the ConfigMap and the secrets as files outside the state volume", () => {
    const docs = kubernetes();
    const pod = docs.find((d) => d.kind === "StatefulSet").spec.template.spec;
    const [c] = pod.containers;
    const mount = (name: string) => c.volumeMounts.find((m: Doc) => m.name === name);
    const volume = (name: string) => pod.volumes.find((v: Doc) => v.name === name);
    const configMap = docs.find((d) => d.kind === "ConfigMap");
    expect(volume("config").configMap.name).toBe(configMap.metadata.name);
    expect(mount("config")).toMatchObject({ mountPath: "/etc/kerf", readOnly: true });
    const secret = docs.find((d) => d.kind === "Secret");
    expect(volume("secrets").secret.secretName).toBe(secret.metadata.name);
    expect(mount("secrets").readOnly).toBe(true);
    expect(mount("secrets").mountPath.startsWith(`${STATE}/`)).toBe(false);
    // the config names each secret by its file in that mount, never by value
    const kerf = parse(configMap.data["kerf.yaml"]) as Doc;
    const dir = mount("secrets").mountPath;
    expect(kerf.cloud.enrolment.tokenFile).toBe(`${dir}/bootstrap-token`);
    expect(kerf.cloud.proxy.passwordFile).toBe(`${dir}/proxy-password`);
    expect(kerf.buffer.encryption.keyFile).toBe(`${dir}/buffer-key`);
    for (const key of ["bootstrap-token", "proxy-user", "proxy-password", "buffer-key"]) expect(Object.keys(secret.stringData)).toContain(key);
  });

  describe("the ConfigMap's config", () => {
    let t: TempDir;
    beforeEach(async () => {
      t = await tempDir();
    });
    afterEach(async () => {
      await t.cleanup();
    });

    it("loads without errors or warnings, its secrets read from the mounted files", async () => {
      const configMap = kubernetes().find((d) => d.kind === "ConfigMap");
      await t.write("secrets/bootstrap-token", "token\n", 0o600);
      await t.write("secrets/proxy-user", "user\n", 0o600);
      await t.write("secrets/proxy-password", "password\n", 0o600);
      await t.write("secrets/buffer-key", `${"ab".repeat(32)}\n`, 0o600);
      await t.write("mapping.yaml", configMap.data["mapping.yaml"]);
      const file = await t.write("kerf.yaml", configMap.data["kerf.yaml"].replaceAll("/run/secrets/kerf/", `${t.dir}/secrets/`));
      const loaded = await loadConfig(file);
      expect(loaded.warnings).toEqual([]);
      expect(loaded.secrets.proxy!.password.reveal()).toBe("password");
      expect(loaded.secrets.bufferKey).toBeDefined();
      expect(Object.keys(loaded.mapping.machines)).toEqual(loaded.config.machines.map((m) => m.id));
    });
  });
});

describe("README: docker run", () => {
  it("shows the hardened run: read-only root, a tmpfs /tmp, no capabilities, no new privileges", () => {
    const run = /^docker run [^`]*?(?=\n```)/m.exec(read("README.md").split("### Hardened run")[1] ?? "")?.[0] ?? "";
    for (const option of ["--read-only", "--tmpfs /tmp", "--cap-drop ALL", "--security-opt no-new-privileges", `kerf-state:${STATE}`]) expect(run).toContain(option);
  });
});
