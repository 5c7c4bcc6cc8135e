import { mkdirSync } from "node:fs";
import { dirname } from "node:path";
import { DatabaseSync } from "node:sqlite";
import { KerfError } from "../errors.ts";

export function storeError(file: string, doing: string, err: unknown): KerfError {
  if (err instanceof KerfError) return err;
  return new KerfError("COMMAND_STORE", `${file}: ${doing} failed: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
}

/**
 * Opens (or creates) one of the command stores: WAL, synchronous FULL (what is written is on
 * disk before the command runs), and an application id so that another program's SQLite file,
 * or the other store, is refused. Not locked exclusively: `kerf audit` reads while the agent writes.
 */
export function openStore(file: string, applicationId: number, schema: string, readOnly = false): DatabaseSync {
  let db: DatabaseSync;
  try {
    if (!readOnly) mkdirSync(dirname(file), { recursive: true, mode: 0o700 });
    db = new DatabaseSync(file, { readOnly });
  } catch (err) {
    throw storeError(file, "opening", err);
  }
  try {
    db.exec("PRAGMA busy_timeout = 5000");
    const pragma = (name: string) => Number(Object.values(db.prepare(`PRAGMA ${name}`).get() ?? {})[0]);
    if (pragma("user_version") === 0) {
      if (readOnly) throw new KerfError("COMMAND_STORE", `${file}: no store there yet (expected a file written by kerf run)`);
      const tables = (db.prepare("SELECT count(*) AS n FROM sqlite_schema").get() as { n: number }).n;
      if (tables !== 0) throw new KerfError("COMMAND_STORE", `${file} is an SQLite database of another program (expected a Kerf command store or a new file)`);
      db.exec("PRAGMA journal_mode = WAL");
      db.exec("BEGIN IMMEDIATE");
      db.exec(schema);
      db.exec(`PRAGMA application_id = ${applicationId}`);
      db.exec("PRAGMA user_version = 1");
      db.exec("COMMIT");
    } else if (pragma("application_id") !== applicationId || pragma("user_version") !== 1) {
      throw new KerfError("COMMAND_STORE", `${file} is not this kind of Kerf command store (application_id ${pragma("application_id")}, version ${pragma("user_version")}; expected ${applicationId}, version 1)`);
    }
    if (!readOnly) db.exec("PRAGMA synchronous = FULL");
    return db;
  } catch (err) {
    if (db.isTransaction) db.exec("ROLLBACK");
    db.close();
    throw storeError(file, "opening", err);
  }
}
