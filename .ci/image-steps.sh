#!/usr/bin/env bash
# Runs the Dockerfile's build and start steps without Docker: a production install
# into a clean folder (what the image's deps stage does), then start the product from it
# against the repository's simulator and devcloud, which the image does not ship: there the
# development commands must answer with one clear line.
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
# Read-only root filesystem: the temporary files (tuf-js downloads, Node's compile cache) go to
# TMPDIR=/tmp, the tmpfs the documented runs mount; the launcher is PID 1 and stops on SIGTERM.
grep -q '^ *TMPDIR=/tmp$' "$df" || { echo "Dockerfile: ENV TMPDIR=/tmp is missing"; exit 1; }
grep -q '^STOPSIGNAL SIGTERM$' "$df"
for f in "$repo/deploy/compose.yaml" "$repo/deploy/kubernetes/statefulset.yaml" "$repo/README.md"; do
  grep -q '/tmp' "$f" || { echo "$f mounts no writable /tmp for the read-only root filesystem"; exit 1; }
done
# The launcher is the entry point; CMD only adds its options. The final stage has the lock file
# (the launcher compares an update's dependencies with it) and trust/ (the TUF root.json).
grep -q '^CMD \["--config", "/etc/kerf/kerf.yaml", "--state-dir", "/var/lib/kerf"\]$' "$df"
[ "$(grep -c '^COPY package.json package-lock.json ./$' "$df")" -eq 2 ] || { echo "Dockerfile: the final stage does not copy package-lock.json"; exit 1; }
grep -q '^COPY trust ./trust$' "$df"
test -d "$repo/trust"
# The image starts node with the same V8 flags as bin/kerf.js's shebang line, and so do we here.
flags=$(sed -n '1s/^#!\/usr\/bin\/env -S node //p' "$repo/bin/kerf.js")
entry=$(sed -n 's/^ENTRYPOINT \["node", \(.*\), "bin\/kerf.js", "launch"\]$/\1/p' "$df" | tr -d '",')
[ -n "$flags" ] && [ "$flags" = "$entry" ] || { echo "Dockerfile ENTRYPOINT flags ($entry) differ from bin/kerf.js ($flags)"; exit 1; }

# deps stage
mkdir -p "$work/app"
cp "$repo/package.json" "$repo/package-lock.json" "$work/app/"
(cd "$work/app" && npm ci --omit=dev --ignore-scripts --no-audit --no-fund >/dev/null)
# final stage: only what the image copies, less the development sources .dockerignore names
cp -r "$repo/bin" "$repo/src" "$repo/config" "$repo/trust" "$work/app/"
ignored=$(grep -E '^src/' "$repo/.dockerignore")
[ -n "$ignored" ] || { echo ".dockerignore leaves no development sources out"; exit 1; }
for p in $ignored; do rm -r "${work:?}/app/$p"; done
for p in vitest node-opcua-server node-opcua-nodesets node-opcua-address-space; do
  test ! -e "$work/app/node_modules/$p" || { echo "dev dependency $p leaked into the production install"; exit 1; }
done
echo "production node_modules: $(du -sm "$work/app/node_modules" | cut -f1) MB"

cd "$work/app"
# shellcheck disable=SC2086 # word splitting of the flag list is intended
"$node24" $flags bin/kerf.js validate --config config/kerf.example.yaml
# The development commands: one line that says what to do, a non-zero exit, no stack trace.
grep -q '"bench": "node src/cli/bench.ts"' package.json
for cmd in "bin/kerf.js simulate" "bin/kerf.js devcloud" "bin/kerf.js demo --seconds 4" "src/cli/bench.ts"; do
  # shellcheck disable=SC2086
  if out=$("$node24" $flags $cmd 2>&1); then echo "production install: '$cmd' ran"; exit 1; fi
  [ "$(printf '%s\n' "$out" | wc -l)" -eq 1 ] && grep -q 'is a development command' <<<"$out" \
    || { printf "production install: '%s' did not answer with one clear line:\n%s\n" "$cmd" "$out"; exit 1; }
done
echo "production install: $out"
# The product itself: commissioning (kerf endpoints), then the entry point (kerf launch, which
# runs kerf run) delivers to the repository's devcloud and reports healthy.
# shellcheck disable=SC2086
(cd "$repo" && npx node .ci/production-run.ts "$work/app" "$work" $flags)
echo "image steps: ok"
