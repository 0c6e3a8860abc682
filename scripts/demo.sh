#!/usr/bin/env bash
# The main job, end to end, on one machine: a scientist's image goes from a registry to a
# command running inside it as an ordinary user.
#   1. start a local docker-registry and munged, push a small image (built with umoci, pushed
#      with skopeo: no Docker engine needed);
#   2. start the image gateway with an upstream-style imagemanager.json;
#   3. as an ordinary user: shifterimg pull, images, lookup;
#   4. start shifterd and, as that user, shifter --image=... cat /etc/os-release.
# Everything lives in one temp directory and every service is stopped by pid at the end.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "demo.sh: run as root (it starts the root daemon shifterd and makes a demo user)" >&2
  exit 2
fi
bash scripts/install-deps.sh

WORK=$(mktemp -d /tmp/shifter-demo.XXXXXX)
chmod 0755 "$WORK"
# shellcheck source=scripts/lib/services.sh
. scripts/lib/services.sh
trap 'stop_services; rm -rf "$WORK"' EXIT
DEMO_USER=shifterdemo
id "$DEMO_USER" >/dev/null 2>&1 || useradd -M -d /nonexistent -s /bin/sh "$DEMO_USER"

step() { printf '\n== %s\n' "$*"; }

step "local registry, munged, and a small image pushed with skopeo"
start_registry
start_munged
bash scripts/make-demo-image.sh "$WORK/oci" >/dev/null
skopeo copy --quiet --dest-tls-verify=false "oci:$WORK/oci:1.0" "docker://$REGISTRY_HOST/demo/busybox:1.0"
echo "pushed $REGISTRY_HOST/demo/busybox:1.0"

step "image gateway"
mkdir -p "$WORK/images" "$WORK/gw-cache" "$WORK/gw-expand"
cat > "$WORK/imagemanager.json" <<JSON
{
  "WorkerThreads": 2,
  "DefaultImageLocation": "$REGISTRY_HOST",
  "DefaultImageFormat": "squashfs",
  "PullUpdateTimeout": 300,
  "ImageExpirationTimeout": "90:00:00:00",
  "CacheDirectory": "$WORK/gw-cache",
  "ExpandDirectory": "$WORK/gw-expand",
  "Locations": { "$REGISTRY_HOST": { "remotetype": "dockerv2", "url": "http://$REGISTRY_HOST" } },
  "Platforms": {
    "demo": {
      "mungeSocketPath": "$MUNGE_SOCKET",
      "accesstype": "local",
      "admins": ["root"],
      "local": { "imageDir": "$WORK/images" }
    }
  }
}
JSON
start_gateway "$WORK/imagemanager.json"
echo "gateway at $GATEWAY_URL"

cat > "$WORK/udiRoot.conf" <<CONF
system=demo
imageGateway=$GATEWAY_URL
defaultImageType=docker
imagePath=$WORK/images
udiMount=/var/udiMount
loopMount=/var/udiLoopMount
udiRootPath=$PWD
etcPath=/etc/shifter/shifter_etc_files
rootfsType=tmpfs
populateEtcDynamically=1
allowLibcPwdCalls=1
siteEnv=SHIFTER_RUNTIME=1
mungeSocketPath=$MUNGE_SOCKET
CONF
as_user() { runuser -u "$DEMO_USER" -- env SHIFTER_UDIROOT_CONF="$WORK/udiRoot.conf" "$@"; }

step "$DEMO_USER\$ shifterimg pull demo/busybox:1.0"
as_user bin/shifterimg pull demo/busybox:1.0
step "$DEMO_USER\$ shifterimg images"
as_user bin/shifterimg images
step "$DEMO_USER\$ shifterimg lookup demo/busybox:1.0"
as_user bin/shifterimg lookup demo/busybox:1.0

step "shifterd"
bin/shifterd --config "$WORK/udiRoot.conf" --socket "$WORK/shifterd.sock" >"$WORK/shifterd.log" 2>&1 &
SERVICE_PIDS+=($!)
wait_for shifterd test -S "$WORK/shifterd.sock"

step "$DEMO_USER\$ shifter --image=demo/busybox:1.0 cat /etc/os-release"
cd /tmp
as_user SHIFTERD_SOCKET="$WORK/shifterd.sock" "$OLDPWD/bin/shifter" --image=demo/busybox:1.0 cat /etc/os-release
step "$DEMO_USER\$ shifter --image=demo/busybox:1.0 id"
as_user SHIFTERD_SOCKET="$WORK/shifterd.sock" "$OLDPWD/bin/shifter" --image=demo/busybox:1.0 id
echo
echo "demo: done"
