import { constants } from "node:fs";
import { access, readFile, stat } from "node:fs/promises";
import path from "node:path";
import { isKerfError, KerfError, type KerfErrorCode } from "../errors.ts";
import { formatPath, found } from "./describe.ts";
import { errorMap, flattenIssues, INLINE_SECRET_FIELDS, type Located } from "./issues.ts";
import { ConfigSchema, MappingSchema, type Config, type Mapping } from "./schema.ts";
import { bufferKey, FORMS as KEY_FORMS } from "./buffer-key.ts";
import { Secret, type Secrets } from "./secrets.ts";
import { parseYaml, type YamlSource } from "./yaml-source.ts";
import { loadCommandKeys } from "../commands/envelope.ts";

export type { Config, Mapping } from "./schema.ts";
export { Secret, type Secrets } from "./secrets.ts";

export interface LoadedConfig {
  /** Absolute path of the config file. */
  file: string;
  /** The validated config; every file path in it is absolute. */
  config: Config;
  /** Absolute path of the mapping file. */
  mappingFile: string;
  mapping: Mapping;
  secrets: Secrets;
  /** Things that work but deserve attention, as "FILE:LINE:COL: path: text" lines. */
  warnings: string[];
}

// A mapping of 100k nodes is about 10 MB; anything far beyond is not a config file.
const MAX_FILE_BYTES = 64 * 1024 * 1024;

type Kind = "config" | "mapping" | "secret";

interface Problem {
  /** 0 for the config file, 1 for the mapping: the config's lines come first. */
  fileIndex: number;
  source: YamlSource;
  offset: number;
  /** Order of discovery: problems at one spot keep it. */
  seq: number;
  path: string;
  message: string;
  kind: Kind;
}

/** Lines printed for a file full of mistakes; the count covers all of them. */
export const SHOWN_PROBLEMS = 50;

/**
 * Collects every problem of both files, so that one run reports all of them, but keeps only the
 * first SHOWN_PROBLEMS by position: a file of a million unknown keys is counted, not printed.
 */
class Report {
  count = 0;
  readonly kinds = new Set<Kind>();
  readonly files = new Set<string>();
  #first: Problem[] = [];
  readonly warnings: Problem[] = [];

  add(source: YamlSource, fileIndex: number, p: Located, kind: Kind): void {
    this.#keep({ fileIndex, source, offset: source.locate(p.path, p.at), seq: this.count, path: formatPath(p.path), message: p.message, kind });
  }

  addSyntax(source: YamlSource, fileIndex: number, kind: Kind): void {
    for (const e of source.errors) this.#keep({ fileIndex, source, seq: this.count, ...e, kind });
  }

  warn(source: YamlSource, fileIndex: number, p: Located): void {
    this.warnings.push({ fileIndex, source, offset: source.locate(p.path, p.at), seq: this.warnings.length, path: formatPath(p.path), message: p.message, kind: "config" });
  }

  #keep(problem: Problem): void {
    this.count++;
    this.kinds.add(problem.kind);
    this.files.add(problem.source.display);
    this.#first.push(problem);
    // Sorting now and then keeps this linear in the number of problems, with SHOWN_PROBLEMS kept.
    if (this.#first.length >= 4 * SHOWN_PROBLEMS) this.#first = Report.sorted(this.#first).slice(0, SHOWN_PROBLEMS);
  }

  /** "FILE:LINE:COL: path: message" for the first problems by file and position, and a count of the rest. */
  lines(): string[] {
    const shown = Report.format(Report.sorted(this.#first).slice(0, SHOWN_PROBLEMS));
    const more = this.count - shown.length;
    return more > 0 ? [...shown, `… and ${more} more error${more === 1 ? "" : "s"}`] : shown;
  }

  static sorted(list: Problem[]): Problem[] {
    return [...list].sort((a, b) => a.fileIndex - b.fileIndex || a.offset - b.offset || a.seq - b.seq);
  }

  static format(list: Problem[]): string[] {
    return list.map((p) => {
      const { line, col } = p.source.position(p.offset);
      return `${p.source.display}:${line}:${col}: ${p.path === "" ? "" : `${p.path}: `}${p.message}`;
    });
  }
}

/**
 * Reads, validates and cross-checks the connector config and its mapping file (or, with
 * `mappingFile`, another mapping file in its place, shown as `mappingDisplay` in errors).
 * Throws a KerfError whose details list every problem as "FILE:LINE:COL: path: message".
 */
export async function loadConfig(file: string, options: { mappingFile?: string; mappingDisplay?: string } = {}): Promise<LoadedConfig> {
  const configFile = path.resolve(file);
  const configDir = path.dirname(configFile);
  const cfgSource = await readSource(file);
  const report = new Report();
  report.addSyntax(cfgSource, 0, "config");
  scanInlineSecrets(cfgSource, report);

  const raw = cfgSource.data;
  let config: Config | undefined;
  if (looksLikeMapping(raw)) {
    // Its missing instance, cloud and the rest would only hide the one real mistake.
    report.add(cfgSource, 0, { path: ["machines"], at: "key", message: "this looks like a mapping file (machines: holds groups per machine id), not a connector config; give the connector config (kerf.yaml) to --config: its mapping: field names this file" }, "config");
  } else if (cfgSource.errors.length === 0) {
    const parsed = ConfigSchema.safeParse(raw, { error: errorMap, reportInput: true });
    if (parsed.success) config = parsed.data;
    else for (const p of flattenIssues(parsed.error.issues, true)) report.add(cfgSource, 0, p, "config");
  }

  const secrets: Secrets = { machines: Object.create(null) as Secrets["machines"] };
  await checkReferencedFiles(cfgSource, raw, configDir, report, secrets);

  // The mapping is checked even when the config has errors, so that one run shows everything;
  // when the config does not parse at all, its mapping line may still be readable.
  const rawConfig = isRecord(raw) ? raw : { mapping: scalarAt(cfgSource, "mapping") };
  let mapping: Mapping | undefined;
  let mappingFile = "";
  if (typeof rawConfig.mapping === "string" && rawConfig.mapping !== "") {
    // A candidate mapping (a remote mapping.set) is checked in place of the file the config names.
    mappingFile = options.mappingFile ?? path.resolve(configDir, rawConfig.mapping);
    const display = options.mappingDisplay ?? (path.isAbsolute(rawConfig.mapping) ? rawConfig.mapping : path.join(path.dirname(file), rawConfig.mapping));
    mapping = await loadMapping(mappingFile, display, cfgSource, rawConfig, report);
  }

  if (report.count > 0 || !config || !mapping) {
    const { kinds } = report;
    const code: KerfErrorCode = kinds.has("config") ? "CONFIG_INVALID" : kinds.has("mapping") ? "MAPPING_INVALID" : "SECRET_MISSING";
    const n = report.count;
    throw new KerfError(code, `${[...report.files].join(" and ")}: ${n} error${n === 1 ? "" : "s"}`, { details: report.lines() });
  }

  for (const [i, m] of config.machines.entries()) {
    if (!Object.hasOwn(mapping.machines, m.id)) {
      report.warn(cfgSource, 0, { path: ["machines", i, "id"], at: "value", message: `machine ${found(m.id)} has no entry in the mapping, so nothing will be read from it` });
    }
  }
  if (config.cloud.pins.length === 1) {
    report.warn(cfgSource, 0, {
      path: ["cloud", "pins"],
      at: "value",
      message: "only one pin; add a backup pin (a key that is not yet in use) so that a key change on the cloud does not lock this connector out",
    });
  }

  return {
    file: configFile,
    config: absolutePaths(config, configDir),
    mappingFile,
    mapping,
    secrets,
    warnings: Report.format(Report.sorted(report.warnings)),
  };
}

/** The message and every detail line, as `kerf validate` prints them. */
export function formatConfigErrors(err: unknown): string {
  if (err instanceof KerfError) return [...err.details, `kerf: ${err.message}`].join("\n");
  return `kerf: ${err instanceof Error ? err.message : String(err)}`;
}

async function loadMapping(file: string, display: string, cfgSource: YamlSource, rawConfig: Record<string, unknown>, report: Report): Promise<Mapping | undefined> {
  const text = await readText(file);
  if (typeof text !== "string") {
    report.add(cfgSource, 0, { path: ["mapping"], at: "value", message: `cannot read the mapping file (found ${found(display)}: ${text.message}; expected a readable YAML file)` }, "mapping");
    return undefined;
  }
  const source = parseYaml(display, text);
  report.addSyntax(source, 1, "mapping");
  if (source.errors.length > 0) return undefined;
  if (looksLikeConfig(source.data)) {
    const message = `the mapping file looks like a connector config, not a mapping file (found ${found(display)} with ${isRecord(source.data) && Array.isArray(source.data.machines) ? "a list of machines" : "instance or cloud"}; expected the node-id mapping file, see config/mapping.example.yaml)`;
    report.add(cfgSource, 0, { path: ["mapping"], at: "value", message }, "mapping");
    return undefined;
  }

  const parsed = MappingSchema.safeParse(source.data, { error: errorMap, reportInput: true });
  if (!parsed.success) for (const p of flattenIssues(parsed.error.issues)) report.add(source, 1, p, "mapping");
  const mapping = parsed.success ? parsed.data : undefined;

  // Cross-check against the machine ids that the config declares, as far as it could be read.
  if (!Array.isArray(rawConfig.machines)) return mapping;
  const ids = new Set(rawConfig.machines.map((m) => (isRecord(m) ? m.id : undefined)).filter((id): id is string => typeof id === "string"));
  const mapped = isRecord(source.data) && isRecord(source.data.machines) ? Object.keys(source.data.machines) : [];
  for (const id of mapped) {
    if (!ids.has(id)) {
      const known = ids.size > 0 ? [...ids].map((x) => found(x)).join(", ") : "none";
      report.add(source, 1, { path: ["machines", id], at: "key", message: `not a machine of the config (found ${found(id)}; expected one of the config's machine ids: ${known})` }, "mapping");
    }
  }
  return mapping;
}

/** A config file read and parsed; a file that cannot be read is one error, said once. */
async function readSource(file: string): Promise<YamlSource> {
  const text = await readText(path.resolve(file));
  if (typeof text !== "string") throw new KerfError(text.code === "ENOENT" ? "CONFIG_NOT_FOUND" : "CONFIG_INVALID", `cannot read config file ${file}: ${text.message}`);
  return parseYaml(file, text);
}

/**
 * Only the instance id of a config file, for the commissioning commands: they run before the
 * mapping file exists, and must name the connector's OPC UA certificate as kerf run will.
 */
export async function loadInstance(file: string): Promise<string> {
  const source = await readSource(file);
  const report = new Report();
  report.addSyntax(source, 0, "config");
  const raw = source.data;
  const parsed = ConfigSchema.shape.instance.safeParse(isRecord(raw) ? raw.instance : undefined, { error: errorMap, reportInput: true });
  if (source.errors.length === 0 && !parsed.success) {
    for (const p of flattenIssues(parsed.error.issues)) report.add(source, 0, { ...p, path: ["instance", ...p.path] }, "config");
  }
  if (report.count > 0 || !parsed.success) throw new KerfError("CONFIG_INVALID", `${file}: no valid instance id`, { details: report.lines() });
  return parsed.data;
}

/** A mapping file given where the config belongs: top-level machines by id, and none of the config's own fields. */
function looksLikeMapping(raw: unknown): boolean {
  return isRecord(raw) && isRecord(raw.machines) && !Object.hasOwn(raw, "instance") && !Object.hasOwn(raw, "cloud");
}

function looksLikeConfig(raw: unknown): boolean {
  return isRecord(raw) && (Array.isArray(raw.machines) || Object.hasOwn(raw, "instance") || Object.hasOwn(raw, "cloud"));
}

/** A top-level string value read from the YAML tree itself, for documents that did not parse. */
function scalarAt(source: YamlSource, key: string): string | undefined {
  try {
    const value = source.doc.get(key);
    return typeof value === "string" ? value : undefined;
  } catch {
    return undefined;
  }
}

/** Any field named like an inline secret, wherever it is: the one message that says what to do instead. */
function scanInlineSecrets(source: YamlSource, report: Report): void {
  // A path is built only on the way into a mapping or list: a file can have millions of scalars.
  const walk = (value: unknown, at: PropertyKey[]): void => {
    if (at.length > 64) return;
    if (Array.isArray(value)) value.forEach((v, i) => typeof v === "object" && v !== null && walk(v, [...at, i]));
    else if (isRecord(value)) {
      for (const key of Object.keys(value)) {
        const message = INLINE_SECRET_FIELDS[key];
        const v = value[key];
        if (message !== undefined && Object.hasOwn(INLINE_SECRET_FIELDS, key)) report.add(source, 0, { path: [...at, key], at: "key", message }, "config");
        else if (typeof v === "object" && v !== null) walk(v, [...at, key]);
      }
    }
  };
  // Only a file that names them (or could, through an escape in a quoted key) needs the walk.
  if (/password|privateKey|\\/.test(source.text)) walk(source.data, []);
}

/**
 * Files the connector needs at startup are checked now, each error at the line that names
 * the file: the user's password file or variable, certificates, the buffer's key file and the
 * cloud CA bundle.
 * Identity files are not checked: enrolment may create them on first start.
 */
async function checkReferencedFiles(source: YamlSource, raw: unknown, dir: string, report: Report, secrets: Secrets): Promise<void> {
  if (!isRecord(raw)) return;
  const fail = (p: PropertyKey[], message: string, kind: Kind) => report.add(source, 0, { path: p, at: "value", message }, kind);

  const machines = Array.isArray(raw.machines) ? raw.machines : [];
  for (const [i, m] of machines.entries()) {
    if (!isRecord(m) || !isRecord(m.user)) continue;
    const id = typeof m.id === "string" ? m.id : `#${i}`;
    const user = m.user;
    const at = ["machines", i, "user"];
    if (user.type === "username") {
      if (typeof user.passwordFile === "string" && user.passwordFile !== "" && user.passwordEnv === undefined) {
        const password = await secretFile(source, report, dir, [...at, "passwordFile"], user.passwordFile, "password");
        if (password) secretsFor(secrets, id).password = password;
      } else if (typeof user.passwordEnv === "string" && /^[A-Za-z_][A-Za-z0-9_]*$/.test(user.passwordEnv) && user.passwordFile === undefined) {
        const value = process.env[user.passwordEnv];
        if (value === undefined) fail([...at, "passwordEnv"], `environment variable ${user.passwordEnv} is not set (expected it to hold the password)`, "secret");
        else if (value === "") fail([...at, "passwordEnv"], `environment variable ${user.passwordEnv} is empty (expected it to hold the password)`, "secret");
        else secretsFor(secrets, id).password = new Secret(value);
      }
    } else if (user.type === "certificate") {
      if (typeof user.certificateFile === "string" && user.certificateFile !== "") {
        const text = await readText(path.resolve(dir, user.certificateFile), 1024 * 1024);
        if (typeof text !== "string") fail([...at, "certificateFile"], `cannot read the certificate (found ${found(user.certificateFile)}: ${text.message}; expected a readable PEM file)`, "config");
        else if (!text.includes("-----BEGIN CERTIFICATE-----")) fail([...at, "certificateFile"], `not a PEM certificate (found ${found(user.certificateFile)}; expected a file with -----BEGIN CERTIFICATE-----)`, "config");
        else secretsFor(secrets, id).userCertificatePem = text;
      }
      if (typeof user.privateKeyFile === "string" && user.privateKeyFile !== "") {
        const text = await readText(path.resolve(dir, user.privateKeyFile), 1024 * 1024);
        if (typeof text !== "string") fail([...at, "privateKeyFile"], `cannot read the private key (found ${found(user.privateKeyFile)}: ${text.message}; expected a readable PEM file)`, "secret");
        else if (!/-----BEGIN [A-Z ]*PRIVATE KEY-----/.test(text)) fail([...at, "privateKeyFile"], `not a PEM private key (found ${found(user.privateKeyFile)}; expected a file with -----BEGIN PRIVATE KEY-----)`, "secret");
        else secretsFor(secrets, id).userPrivateKey = new Secret(text);
      }
    }
  }

  const encryption = isRecord(raw.buffer) && isRecord(raw.buffer.encryption) ? raw.buffer.encryption : {};
  if (typeof encryption.keyFile === "string" && encryption.keyFile !== "") {
    const at = ["buffer", "encryption", "keyFile"];
    const read = await readKeyFile(path.resolve(dir, encryption.keyFile), encryption.keyFile);
    if ("problem" in read) fail(at, read.problem, "secret");
    else {
      secrets.bufferKey = new Secret(read.key);
      if (read.warning) report.warn(source, 0, { path: at, at: "value", message: read.warning });
    }
  }

  const cloud = isRecord(raw.cloud) ? raw.cloud : {};
  if (typeof cloud.caFile === "string" && cloud.caFile !== "") {
    try {
      await access(path.resolve(dir, cloud.caFile), constants.R_OK);
    } catch (err) {
      fail(["cloud", "caFile"], `cannot read the CA file (found ${found(cloud.caFile)}: ${fsReason(err)}; expected a readable PEM file)`, "config");
    }
  }
  const commands = isRecord(raw.commands) ? raw.commands : {};
  if (typeof commands.keys === "string" && commands.keys !== "") {
    const keys = commands.keys;
    await loadCommandKeys(path.resolve(dir, keys)).catch((err: unknown) => {
      const problem = isKerfError(err) ? (err.details[0] ?? err.message) : String(err);
      fail(["commands", "keys"], `unusable command-signing keys (found ${found(keys)}: ${problem})`, "config");
    });
  }
  const proxy = isRecord(cloud.proxy) ? cloud.proxy : {};
  if (typeof proxy.usernameFile === "string" && proxy.usernameFile !== "" && typeof proxy.passwordFile === "string" && proxy.passwordFile !== "") {
    const username = await secretFile(source, report, dir, ["cloud", "proxy", "usernameFile"], proxy.usernameFile, "proxy user name");
    const password = await secretFile(source, report, dir, ["cloud", "proxy", "passwordFile"], proxy.passwordFile, "proxy password");
    if (username && password) secrets.proxy = { username, password };
  }
}

/**
 * A one-line secret file, without its final newline, or undefined once the problem is
 * reported at the line that names the file. A file others can read gets a warning.
 */
async function secretFile(source: YamlSource, report: Report, dir: string, at: PropertyKey[], name: string, what: string): Promise<Secret | undefined> {
  const file = path.resolve(dir, name);
  const text = await readText(file, 64 * 1024);
  if (typeof text !== "string") {
    report.add(source, 0, { path: at, at: "value", message: `cannot read the ${what} file (found ${found(name)}: ${text.message}; expected a readable file)` }, "secret");
    return undefined;
  }
  const mode = (await stat(file)).mode & 0o777;
  if ((mode & 0o077) !== 0) {
    report.warn(source, 0, { path: at, at: "value", message: `the ${what} file can be read by other users (found mode ${mode.toString(8).padStart(4, "0")}; expected 0600 or 0400)` });
  }
  const value = text.replace(/\r?\n$/, "");
  if (value !== "") return new Secret(value);
  report.add(source, 0, { path: at, at: "value", message: `the ${what} file is empty (found ${found(name)}; expected the ${what})` }, "secret");
  return undefined;
}

function secretsFor(secrets: Secrets, id: string): Secrets["machines"][string] {
  return (secrets.machines[id] ??= {});
}

/** The buffer's key file, checked (see buffer-key.ts), or what is wrong with it. */
async function readKeyFile(file: string, display: string): Promise<ReturnType<typeof bufferKey>> {
  try {
    const info = await stat(file);
    if (!info.isFile()) return { problem: `the key file is not a regular file (found ${found(display)}; expected a file of ${KEY_FORMS})` };
    if (info.size > 4096) return { problem: `the key file is too large for a key (found ${found(display)} of ${info.size} bytes; expected ${KEY_FORMS})` };
    return bufferKey(await readFile(file), info.mode & 0o777, display);
  } catch (err) {
    return { problem: `cannot read the key file (found ${found(display)}: ${fsReason(err)}; expected a readable file of ${KEY_FORMS})` };
  }
}

/** Reads a regular file as UTF-8, or says in words why not. */
async function readText(file: string, maxBytes = MAX_FILE_BYTES): Promise<string | { code: string; message: string }> {
  try {
    const info = await stat(file);
    // Reading a FIFO or a device such as /dev/zero would hang or never end.
    if (!info.isFile()) return { code: "ENOTFILE", message: "not a regular file" };
    if (info.size > maxBytes) return { code: "EFBIG", message: `too large (${info.size} bytes; at most ${maxBytes})` };
    const bytes = await readFile(file);
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
    } catch {
      return { code: "EILSEQ", message: "not UTF-8 text" };
    }
  } catch (err) {
    return { code: (err as NodeJS.ErrnoException).code ?? "EIO", message: fsReason(err) };
  }
}

function fsReason(err: unknown): string {
  switch ((err as NodeJS.ErrnoException).code) {
    case "ENOENT":
      return "no such file";
    case "EACCES":
    case "EPERM":
      return "permission denied";
    case "EISDIR":
      return "is a directory";
    case "ENOTDIR":
      return "a parent is not a directory";
    default:
      return (err as Error).message;
  }
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return value !== null && typeof value === "object" && !Array.isArray(value);
}

function absolutePaths(config: Config, dir: string): Config {
  const abs = (p: string) => path.resolve(dir, p);
  return {
    ...config,
    mapping: abs(config.mapping),
    machines: config.machines.map((m) => {
      const u = m.user;
      const user: typeof u =
        u.type === "username"
          ? { ...u, ...(u.passwordFile === undefined ? {} : { passwordFile: abs(u.passwordFile) }) }
          : u.type === "certificate"
            ? { ...u, certificateFile: abs(u.certificateFile), privateKeyFile: abs(u.privateKeyFile) }
            : u;
      return { ...m, user };
    }),
    ...(config.update === undefined
      ? {}
      : {
          update: {
            ...config.update,
            trustedRoot: abs(config.update.trustedRoot),
            ...(config.update.lock?.file === undefined ? {} : { lock: { ...config.update.lock, file: abs(config.update.lock.file) } }),
          },
        }),
    ...(config.commands === undefined ? {} : { commands: { ...config.commands, keys: abs(config.commands.keys) } }),
    buffer: {
      ...config.buffer,
      ...(config.buffer.encryption === undefined ? {} : { encryption: { keyFile: abs(config.buffer.encryption.keyFile) } }),
    },
    status: { ...config.status, ...(config.status.metricsFile === undefined ? {} : { metricsFile: abs(config.status.metricsFile) }) },
    cloud: {
      ...config.cloud,
      ...(config.cloud.caFile === undefined ? {} : { caFile: abs(config.cloud.caFile) }),
      ...(config.cloud.proxy === undefined
        ? {}
        : {
            proxy: {
              ...config.cloud.proxy,
              ...(config.cloud.proxy.usernameFile === undefined ? {} : { usernameFile: abs(config.cloud.proxy.usernameFile) }),
              ...(config.cloud.proxy.passwordFile === undefined ? {} : { passwordFile: abs(config.cloud.proxy.passwordFile) }),
            },
          }),
      ...(config.cloud.identity === undefined
        ? {}
        : { identity: { certificateFile: abs(config.cloud.identity.certificateFile), privateKeyFile: abs(config.cloud.identity.privateKeyFile) } }),
      ...(config.cloud.enrolment?.tokenFile === undefined ? {} : { enrolment: { ...config.cloud.enrolment, tokenFile: abs(config.cloud.enrolment.tokenFile) } }),
    },
  };
}
