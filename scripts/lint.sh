#!/usr/bin/env bash
# Style and static checks, as CI runs them (npm test runs this first): prettier (.prettierrc.json) and eslint
# (eslint.config.js) over the TypeScript and JavaScript, clang-format (native/.clang-format) over the C in native/.
#   scripts/lint.sh          check only (npm run lint); exits non-zero on any violation or a missing checker
#   scripts/lint.sh --fix    rewrite what the tools can fix, then report what is left (npm run format)
set -uo pipefail
cd "$(dirname "$0")/.."

fix=false
case "${1:-}" in
  '') ;;
  --fix) fix=true ;;
  *) echo "lint.sh: unknown argument '$1' (use no argument to check, --fix to rewrite)" >&2; exit 2 ;;
esac

failed=()

c_files=()
while IFS= read -r -d '' f; do c_files+=("$f"); done \
  < <(find native -path native/build -prune -o -type f \( -name '*.c' -o -name '*.h' -o -name '*.cc' \) -print0 | sort -z)

if $fix; then
  # prettier first so that eslint reports only what layout does not fix, and again for the lines eslint rewrote.
  echo "lint: prettier --write"
  npx prettier --write --log-level warn . || failed+=(prettier)
  echo "lint: eslint --fix"
  npx eslint --fix . || failed+=(eslint)
  npx prettier --write --log-level warn . || failed+=(prettier)
else
  echo "lint: prettier --check"
  npx prettier --check --log-level warn . || failed+=(prettier)
  echo "lint: eslint"
  npx eslint --max-warnings 0 . || failed+=(eslint)
fi

echo "lint: clang-format (${#c_files[@]} files in native/)"
if ! command -v clang-format >/dev/null; then
  echo "lint: clang-format is not installed: run scripts/install-deps.sh as root (Debian package clang-format)" >&2
  failed+=(clang-format)
elif [ ${#c_files[@]} -eq 0 ]; then
  echo "lint: no C files found under native/: is this a complete checkout?" >&2
  failed+=(clang-format)
elif [ ! -f native/.clang-format ]; then
  echo "lint: native/.clang-format, which defines the C style, is missing" >&2
  failed+=(clang-format)
elif $fix; then
  clang-format -i --style=file "${c_files[@]}" || failed+=(clang-format)
else
  clang-format --dry-run --Werror --style=file "${c_files[@]}" || failed+=(clang-format)
fi

if [ ${#failed[@]} -gt 0 ]; then
  if $fix; then
    echo "lint: left to fix by hand: ${failed[*]} (see above)" >&2
  else
    echo "lint: FAILED: ${failed[*]} (npm run format fixes layout and what eslint can; the rest is above)" >&2
  fi
  exit 1
fi
echo "lint: ok"
