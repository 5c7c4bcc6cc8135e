#!/usr/bin/env -S node --max-semi-space-size=16 --max-old-space-size=1024
// V8 sizes its heap from the machine's memory: on a 24 GiB host a steady stream of small
// messages let the connector's RSS swell to ~270 MB around ~50 MB of live data; a stated
// old-space limit keeps it near 200 MB (npm run bench measures it). The young generation is
// 16 MB, not 4: every publish response's decoded values live across one flush, and a smaller
// one promoted them to the old generation. Measured at 100,000 values/s: GC 11 % of the event
// loop at 4 MB, 5 % at 16 MB, for about 25 MB more RSS; under a competing CPU hog the 4 MB
// connector fell behind the server and lost values, the 16 MB one kept up.
// A 100,000-item connector runs at about 330 MB with these flags. --heap-growing-percent=30
// cut it further (measured before monitored items went raw), but its extra GC work left too
// little CPU on the 2-core bench: 1 of 3 runs fell behind and lost values.
// NODE_OPTIONS can raise the limit for very large mappings. The Dockerfile repeats these flags.
// Node 24 runs the TypeScript sources directly (type stripping); there is no build step.
const [major] = process.versions.node.split(".").map(Number);
if (major < 24) {
  process.stderr.write(`kerf needs Node 24 or later; this is Node ${process.versions.node}. Run it through npx or npm scripts, which use the project's pinned Node.\n`);
  process.exit(1);
}
// V8 keeps the code it compiled (node-opcua is most of it) in the system's temporary folder:
// the next start loads its modules in about 0.4 s instead of 0.75 s. Where the folder cannot be
// written, Node goes on without it.
const { enableCompileCache } = await import("node:module");
enableCompileCache?.();
await import("../src/main.ts");
