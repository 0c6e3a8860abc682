# Shared by scripts/demo.sh and bench/*.sh: start the services a run needs on loopback ports and
# in one work directory, remember their pids, and stop exactly those (stop_services, run from an
# EXIT trap). Source it; set WORK to a fresh directory first.

SERVICE_PIDS=()

free_port() {
  node -e 'const s=require("net").createServer().listen(0,"127.0.0.1",()=>{console.log(s.address().port);s.close()})'
}

# wait_for DESCRIPTION COMMAND...: retry COMMAND for up to 20 s.
wait_for() {
  local what=$1; shift
  for _ in $(seq 1 200); do
    if "$@" >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "$what did not come up; its log is in $WORK" >&2
  return 1
}

stop_services() {
  local pid
  for pid in "${SERVICE_PIDS[@]}"; do
    kill "$pid" 2>/dev/null || true
  done
  for pid in "${SERVICE_PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null || true
  done
  SERVICE_PIDS=()
}

# start_registry: a docker-registry with storage in $WORK/registry; sets REGISTRY_HOST.
start_registry() {
  local port; port=$(free_port)
  mkdir -p "$WORK/registry"
  cat > "$WORK/registry/config.yml" <<YML
version: 0.1
log: { level: warn }
storage:
  filesystem: { rootdirectory: $WORK/registry/data }
  delete: { enabled: true }
http: { addr: 127.0.0.1:$port }
YML
  docker-registry serve "$WORK/registry/config.yml" >"$WORK/registry/log" 2>&1 &
  SERVICE_PIDS+=($!)
  REGISTRY_HOST=127.0.0.1:$port
  wait_for "docker-registry" curl -sf "http://$REGISTRY_HOST/v2/"
}

# start_munged: a munged with its own key and a socket every user can reach; sets MUNGE_SOCKET.
start_munged() {
  local dir=$WORK/munge
  mkdir -p "$dir/etc" "$dir/run" "$dir/lib" "$dir/log"
  chmod 0700 "$dir/etc" "$dir/lib" "$dir/log"
  chmod 0755 "$dir" "$dir/run"
  dd if=/dev/urandom of="$dir/etc/munge.key" bs=1024 count=1 status=none
  chmod 0400 "$dir/etc/munge.key"
  MUNGE_SOCKET=$dir/run/munge.socket
  munged -F --force --socket="$MUNGE_SOCKET" --key-file="$dir/etc/munge.key" \
    --pid-file="$dir/run/munged.pid" --log-file="$dir/log/munged.log" \
    --seed-file="$dir/lib/munge.seed" >"$dir/log/stdout" 2>&1 &
  SERVICE_PIDS+=($!)
  wait_for "munged" test -S "$MUNGE_SOCKET"
}

# start_gateway CONFIG: bin/shifter-gateway on a free port; sets GATEWAY_URL.
start_gateway() {
  local config=$1 port; port=$(free_port)
  bin/shifter-gateway --config "$config" --listen "127.0.0.1:$port" >"$WORK/gateway.log" 2>&1 &
  SERVICE_PIDS+=($!)
  GATEWAY_URL=http://127.0.0.1:$port
  wait_for "shifter-gateway" curl -sf "$GATEWAY_URL/"
}
