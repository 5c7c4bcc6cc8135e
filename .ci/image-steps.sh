#!/usr/bin/env bash
# Runs the Dockerfile's build and start steps without Docker: a production install
# into a clean folder (what the image's deps stage does), then start the product from it
# as an unprivileged user would, with a read-only config and a separate state folder.
set -euo pipefail
repo=$(cd "$(dirname "$0")/.." && pwd)
node24=$(cd "$repo" && npx node -p 'process.execPath')
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# The Dockerfile must keep the properties this script relies on.
df="$repo/Dockerfile"
grep -q '^FROM .* AS deps' "$df"
grep -q 'npm ci --omit=dev' "$df"
grep -q '^USER ' "$df" && ! grep -q '^USER root' "$df"
grep -q '^HEALTHCHECK ' "$df"
grep -q '^VOLUME \["/var/lib/kerf"\]' "$df"
! grep -q '^EXPOSE' "$df"
# The image starts node with the same V8 flags as bin/kerf.js's shebang line, and so do we here.
flags=$(sed -n '1s/^#!\/usr\/bin\/env -S node //p' "$repo/bin/kerf.js")
entry=$(sed -n 's/^ENTRYPOINT \["node", \(.*\), "bin\/kerf.js"\]$/\1/p' "$df" | tr -d '",')
[ -n "$flags" ] && [ "$flags" = "$entry" ] || { echo "Dockerfile ENTRYPOINT flags ($entry) differ from bin/kerf.js ($flags)"; exit 1; }

# deps stage
mkdir -p "$work/app"
cp "$repo/package.json" "$repo/package-lock.json" "$work/app/"
(cd "$work/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
# final stage: only what the image copies
cp -r "$repo/bin" "$repo/src" "$repo/config" "$work/app/"
test ! -e "$work/app/node_modules/vitest" || { echo "dev dependencies leaked into the production install"; exit 1; }

cd "$work/app"
# shellcheck disable=SC2086 # word splitting of the flag list is intended
"$node24" $flags bin/kerf.js validate --config config/kerf.example.yaml
# shellcheck disable=SC2086
"$node24" $flags bin/kerf.js demo --seconds 4 --state-dir "$work/state" --quiet | tail -n 1 | tee "$work/summary.json"
"$node24" -e 'const s = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8")); if (!(s.acknowledged > 0 && s.dropped === 0 && s.duplicates === 0)) { console.error("production install: demo summary not clean", s); process.exit(1); }' "$work/summary.json"
echo "image steps: ok"
