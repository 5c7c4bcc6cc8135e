#!/usr/bin/env node
// Node 24 runs the TypeScript sources directly (type stripping); there is no build step.
const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  process.stderr.write(`kerf needs Node 24 or later; this is Node ${process.versions.node}. Run it through npx or npm scripts, which use the project's pinned Node.\n`);
  process.exit(1);
}
await import("../src/main.ts");
