import { mkdtemp, rm, writeFile, mkdir } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { loadConfig, type LoadedConfig } from "../../src/config/load.ts";
import { KerfError } from "../../src/errors.ts";

export const PIN_A = "sha256/K3g4OOhatdDqyBeFI7CPOQ4jE9sxeS+SmhoFpAhGpgE=";
export const PIN_B = "sha256/os/40kKbDzBS+/u07vU6wzoZG0sDEv9I58IV1qrAVAU=";

/** GOOD_CONFIG's first five lines: the instance, the mapping and machine saw-1 up to its endpoint. */
const SAW_1 = `instance: kerf-test
mapping: ./mapping.yaml
machines:
  - id: saw-1
    endpoint: opc.tcp://127.0.0.1:4840
`;

/** GOOD_CONFIG's cloud section. */
export const CLOUD = `cloud:
  url: https://cloud.example.com/
  pins: ["${PIN_A}", "${PIN_B}"]
`;

/** A valid config; line numbers matter to the tests that edit it. */
export const GOOD_CONFIG = `${SAW_1}${CLOUD}`;

/** GOOD_CONFIG with `lines` after saw-1's endpoint (they start at line 6), then `cloud`. */
export function configWith(lines: string, cloud = CLOUD): string {
  return `${SAW_1}${lines}${cloud}`;
}

/** A mapping of machine saw-1 with `groups` (they start at line 4). */
export function mappingWith(groups: string): string {
  return `machines:\n  saw-1:\n    groups:\n${groups}`;
}

export const GOOD_MAPPING = mappingWith(`      - name: fast
        nodes:
          - key: spindle.speed
            node: "ns=2;s=Spindle.Speed"
`);

export interface TempDir {
  dir: string;
  write(name: string, text: string, mode?: number): Promise<string>;
  cleanup(): Promise<void>;
}

export async function tempDir(): Promise<TempDir> {
  const dir = await mkdtemp(path.join(os.tmpdir(), "kerf-config-"));
  return {
    dir,
    async write(name, text, mode) {
      const file = path.join(dir, name);
      await mkdir(path.dirname(file), { recursive: true });
      await writeFile(file, text, mode === undefined ? undefined : { mode });
      return file;
    },
    cleanup: () => rm(dir, { recursive: true, force: true }),
  };
}

/** Writes kerf.yaml and mapping.yaml and loads them; returns the KerfError (or fails if none). */
export async function loadError(t: TempDir, config: string, mapping = GOOD_MAPPING): Promise<KerfError> {
  await t.write("kerf.yaml", config);
  await t.write("mapping.yaml", mapping);
  try {
    await loadConfig(path.join(t.dir, "kerf.yaml"));
  } catch (err) {
    if (err instanceof KerfError) return err;
    throw err;
  }
  throw new Error("expected the config to be refused");
}

export async function load(t: TempDir, config: string, mapping = GOOD_MAPPING): Promise<LoadedConfig> {
  await t.write("kerf.yaml", config);
  await t.write("mapping.yaml", mapping);
  return loadConfig(path.join(t.dir, "kerf.yaml"));
}

/** Detail lines with the temp dir stripped, so tests can compare "kerf.yaml:3:5: ..." exactly. */
export function lines(err: KerfError, dir: string): string[] {
  return err.details.map((d) => d.split(dir + path.sep).join(""));
}
