#!/usr/bin/env -S node --max-semi-space-size=4 --max-old-space-size=1024
// V8 sizes its heap from the machine's memory: on a 24 GiB host a steady stream of small
// messages let the connector's RSS swell to ~270 MB around ~50 MB of live data. A small young
// generation and a stated old-space limit keep it near 185 MB (npm run bench measures it).
// --heap-growing-percent=30 would hold a 100,000-item connector near 400 MB instead of ~450, but
// its extra GC work starved the simulator on a 2-core bench and 2 of 5 runs lost values.
// NODE_OPTIONS can raise the limit for very large mappings. The Dockerfile repeats these flags.
// Node 24 runs the TypeScript sources directly (type stripping); there is no build step.
const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  process.stderr.write(`kerf needs Node 24 or later; this is Node ${process.versions.node}. Run it through npx or npm scripts, which use the project's pinned Node.\n`);
  process.exit(1);
}
await import("../src/main.ts");
