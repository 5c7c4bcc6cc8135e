import path from "node:path";
import { packBundle, bundleTargetName } from "../release/bundle.ts";
import { ROLES, type Role } from "../release/keys.ts";
import { publishBundle } from "../release/publish.ts";
import { initRepo, metadataDir, removeTarget, renewTimestamp, rotateKeys } from "../release/repo.ts";
import { intOption, parseCli, UsageError } from "./args.ts";

export const usage = `usage: kerf release <command> [options]

The signed update channel (The Update Framework): build app bundles and publish them to a TUF
repository directory, which the cloud serves at /tuf/ (kerf devcloud --tuf-dir DIR).
Keys are ed25519 PEM files in <keys>/<role>/<keyid>.key (mode 0600); keep the root keys offline.

commands:
  init     --repo DIR --keys DIR [--root-keys N --root-threshold M]
           new keys for root, targets, snapshot and timestamp, and version 1 of each role;
           ships DIR/metadata/1.root.json: the trusted root to put in the image
  pack     --out FILE [--source DIR] [--version V] [--min-version V]
           an app bundle (src/, bin/, package.json, package-lock.json and a manifest) of the
           checkout in --source (default .); the version defaults to its package.json
  publish  --repo DIR --keys DIR --bundle FILE [--pin PIN ...]
           adds the bundle as a target (version and minimum version signed in its custom
           metadata, with optional uplink pins), then a new snapshot and timestamp
  withdraw --repo DIR --keys DIR --version V     removes a release from the targets
  timestamp --repo DIR --keys DIR                 a new timestamp (it expires after 1 day:
                                                  run this at least daily, e.g. from cron);
                                                  snapshot and targets are signed anew when
                                                  past half their lifetime (7 and 90 days)
  rotate   --repo DIR --keys DIR --role ROLE [--count N --threshold M]
           replaces the keys of ROLE (root, targets, snapshot or timestamp) in a new root
           version signed by the old root keys (and the new ones for root); the old keys move
           to <keys>/retired/. Clients follow the new root at their next check.
`;

/** `kerf release init | pack | publish | withdraw | timestamp | rotate`. */
export async function run(argv: string[]): Promise<number> {
  const { values, positionals } = parseCli(
    argv,
    {
      repo: { type: "string" },
      keys: { type: "string" },
      out: { type: "string" },
      source: { type: "string" },
      version: { type: "string" },
      "min-version": { type: "string" },
      bundle: { type: "string" },
      pin: { type: "string", multiple: true },
      role: { type: "string" },
      count: { type: "string" },
      threshold: { type: "string" },
      "root-keys": { type: "string" },
      "root-threshold": { type: "string" },
    },
    "release",
    usage,
  );
  const [command, ...extra] = positionals;
  if (command === undefined) throw new UsageError("release: missing the command (init, pack, publish, withdraw, timestamp or rotate)", usage);
  if (extra.length > 0) throw new UsageError(`release ${command}: unexpected argument '${extra[0]}'`, usage);
  const need = (name: "repo" | "keys" | "out" | "bundle" | "role" | "version"): string => {
    const v = values[name];
    if (v === undefined) throw new UsageError(`release ${command}: --${name} is required`, usage);
    return path.resolve(v);
  };
  const repoOptions = () => ({ repoDir: need("repo"), keysDir: need("keys") });
  switch (command) {
    case "init": {
      const n = intOption(values["root-keys"], "root-keys", 1);
      const m = intOption(values["root-threshold"], "root-threshold", 1);
      const o = repoOptions();
      initRepo({ ...o, keysPerRole: { root: n }, thresholds: { root: m } });
      process.stdout.write(`TUF repository in ${o.repoDir}, keys in ${o.keysDir}\ntrusted root for the image: ${path.join(metadataDir(o.repoDir), "1.root.json")}\n`);
      return 0;
    }
    case "pack": {
      const out = need("out");
      const m = await packBundle({ sourceDir: path.resolve(values.source ?? "."), out, ...(values.version ? { version: values.version } : {}), ...(values["min-version"] ? { minVersion: values["min-version"] } : {}) });
      process.stdout.write(`${out}: kerf ${m.version} (minimum version ${m.minVersion})\n`);
      return 0;
    }
    case "publish": {
      const { target, release, repo } = await publishBundle({ ...repoOptions(), bundle: need("bundle"), ...(values.pin ? { pins: values.pin } : {}) });
      process.stdout.write(`published ${target}: version ${release.version}, minimum ${release.minVersion}${release.pins ? `, ${release.pins.length} pins` : ""}; targets v${repo.targets.signed.version}, snapshot v${repo.snapshot.signed.version}, timestamp v${repo.timestamp.signed.version}\n`);
      return 0;
    }
    case "withdraw": {
      const version = values.version;
      if (!version) throw new UsageError("release withdraw: --version is required", usage);
      removeTarget(repoOptions(), bundleTargetName(version));
      process.stdout.write(`withdrew ${bundleTargetName(version)}\n`);
      return 0;
    }
    case "timestamp": {
      const repo = renewTimestamp(repoOptions());
      const s = repo.timestamp.signed;
      process.stdout.write(`timestamp v${s.version}, expires ${s.expires}; snapshot v${repo.snapshot.signed.version}, expires ${repo.snapshot.signed.expires}; targets v${repo.targets.signed.version}, expires ${repo.targets.signed.expires}\n`);
      const rootLeft = Date.parse(repo.root.signed.expires) - Date.now();
      if (rootLeft < 60 * 86_400_000) process.stderr.write(`kerf: warning: root v${repo.root.signed.version} expires ${repo.root.signed.expires}: sign a new root before (kerf release rotate --role root)\n`);
      return 0;
    }
    case "rotate": {
      const role = values.role;
      if (!ROLES.includes(role as Role)) throw new UsageError(`release rotate: --role must be one of ${ROLES.join(", ")}, got '${role ?? ""}'`, usage);
      const count = values.count === undefined ? undefined : intOption(values.count, "count", 1);
      const threshold = values.threshold === undefined ? undefined : intOption(values.threshold, "threshold", 1);
      const repo = rotateKeys({ ...repoOptions(), role: role as Role, ...(count !== undefined ? { count } : {}), ...(threshold !== undefined ? { threshold } : {}) });
      process.stdout.write(`rotated the ${role} keys: root v${repo.root.signed.version}, timestamp v${repo.timestamp.signed.version}\n`);
      return 0;
    }
    default:
      throw new UsageError(`release: unknown command '${command}' (expected init, pack, publish, withdraw, timestamp or rotate)`, usage);
  }
}
