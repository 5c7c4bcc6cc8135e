/**
 * What `kerf release publish` signs about a bundle, in the target's custom metadata:
 *
 *   custom.kerf = { version, minVersion, pins? }
 *
 * The client believes these only from verified targets metadata (src/update/client.ts).
 */
import { validatePins } from "../certs/pins.ts";
import { KerfError } from "../errors.ts";
import { compareVersions, isVersion } from "../update/version.ts";
import { bundleTargetName, readManifest } from "./bundle.ts";
import { addTarget, loadRepo, type Repo, type RepoOptions } from "./repo.ts";

export interface ReleaseCustom {
  version: string;
  minVersion: string;
  /** Uplink SPKI pin sets the connector may adopt (see docs/protocol.md): the recovery path from a pin lock-out. */
  pins?: string[];
}

export async function publishBundle(o: RepoOptions & { bundle: string; pins?: readonly string[] }): Promise<{ repo: Repo; target: string; release: ReleaseCustom }> {
  const m = await readManifest(o.bundle);
  const release: ReleaseCustom = { version: m.version, minVersion: m.minVersion, ...(o.pins?.length ? { pins: validatePins(o.pins) } : {}) };
  // A minimum once signed is never lowered by the tooling: a client keeps the highest it has seen anyway.
  const floor = signedMinimum(loadRepo(o.repoDir));
  if (floor && compareVersions(release.version, floor) < 0) {
    throw new KerfError("RELEASE", `version ${release.version} is below the signed minimum ${floor} of this repository: clients would refuse it`);
  }
  const target = bundleTargetName(m.version);
  const repo = addTarget(o, target, o.bundle, { kerf: release });
  return { repo, target, release };
}

/** The highest minVersion any Kerf target of `repo` carries. */
export function signedMinimum(repo: Repo): string | undefined {
  let floor: string | undefined;
  for (const t of Object.values(repo.targets.signed.targets)) {
    const kerf = (t.custom as { kerf?: Partial<ReleaseCustom> }).kerf;
    if (isVersion(kerf?.minVersion) && (!floor || compareVersions(kerf.minVersion, floor) > 0)) floor = kerf.minVersion;
  }
  return floor;
}
