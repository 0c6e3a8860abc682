#!/usr/bin/env bash
# Builds the native parts into native/build/ (run by scripts/build-native.mjs). No network.
set -euo pipefail
cd "$(dirname "$0")"
out=build
mkdir -p "$out"

CFLAGS=(-O2 -Wall -Wextra -Werror -D_FORTIFY_SOURCE=2 -fstack-protector-strong)

gcc "${CFLAGS[@]}" -o "$out/shifter" launcher.c
gcc "${CFLAGS[@]}" -o "$out/shifter-nshelper" nshelper.c

node_include="$(dirname "$(command -v node)")/../include/node"
[ -f "$node_include/node_api.h" ] || node_include=/usr/include/node
addon_api="$(node -p "require('node-addon-api').include_dir" 2>/dev/null || true)"
[ -f "$addon_api/napi.h" ] || addon_api=../node_modules/node-addon-api
g++ "${CFLAGS[@]}" -std=c++17 -fPIC -shared -fvisibility=hidden \
  -DNAPI_VERSION=8 -DNAPI_DISABLE_CPP_EXCEPTIONS -DNODE_ADDON_API_DISABLE_DEPRECATED \
  -I"$node_include" -I"$addon_api" \
  -o "$out/shifter_native.node" addon.cc
