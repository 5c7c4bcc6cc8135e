// `npm run bench` starts here, so that a production install answers with one clear line
// instead of a missing module's stack trace.
import { KerfError } from "../errors.ts";
import { requireDevelopmentInstall } from "./development.ts";

try {
  requireDevelopmentInstall("npm run bench");
} catch (err) {
  if (!(err instanceof KerfError)) throw err;
  process.stderr.write(`kerf: ${err.message}\n`);
  process.exit(1);
}
await import("../bench/main.ts");
