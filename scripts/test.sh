#!/usr/bin/env bash
# The whole test suite, as CI runs it: install what is missing (apt, npm), build, lint (scripts/lint.sh: a
# violation fails the run before any test), then every ava test. Tests start the services they need
# (docker-registry, munged, the gateway, shifterd) on loopback ports and temp dirs, and stop exactly those by pid.
# As root every test runs. As any other user the unit tests run and the tests that need root (loop devices,
# mounts, namespaces, other users, shifterd) are skipped, each file saying why (test/helpers/privileges.ts).
# Prints one closing line "tests: N passed, N failed[, N skipped]" and exits non-zero on failure.
set -uo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "test.sh: running as $(id -un), not root: the tests that need root will be skipped"
fi
bash scripts/install-deps.sh || { echo "test.sh: installing dependencies failed" >&2; exit 2; }
bash scripts/lint.sh || { echo "test.sh: lint failed; no tests were run" >&2; exit 1; }

log=$(mktemp)
trap 'rm -f "$log"' EXIT
npx ava "$@" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}

count() { grep -Eo "^ *[0-9]+ $1" "$log" | tail -n 1 | grep -Eo '[0-9]+' || echo 0; }
passed=$(count 'tests? passed')
# With failures ava's summary has no "passed" line: count the passing tests it listed instead.
[ "$passed" = 0 ] && passed=$(grep -c '^ *✔' "$log" || true)
failed=$(count 'tests? failed')
skipped=$(count 'tests? skipped')
todo=$(count 'tests? todo')
uncaught=$(count 'uncaught exceptions?')
rejections=$(count 'unhandled rejections?')
failed=$((failed + uncaught + rejections))
if [ "$rc" != 0 ] && [ "$failed" = 0 ]; then failed=1; fi
line="tests: $passed passed, $failed failed"
if [ "$skipped" != 0 ] || [ "$todo" != 0 ]; then line="$line, $((skipped + todo)) skipped"; fi
echo "$line"
exit "$rc"
