#!/usr/bin/env bash
# The demo behind `sudo make demo`, until `tabby lab` exists: start the
# embedded datastore in a temporary directory, apply examples/, show what
# was stored, and stop the datastore again (by PID) when done.
set -euo pipefail
cd "$(dirname "$0")/.."
tabby=./bin/tabby

port=${TABBY_DEMO_PORT:-23790}
if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
	echo "demo: port $port is in use; set TABBY_DEMO_PORT to a free port" >&2
	exit 1
fi
dir=$(mktemp -d /tmp/tabby-demo.XXXXXX)
pid=
cleanup() {
	if [ -n "$pid" ]; then kill "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; fi
	rm -rf "$dir"
}
trap cleanup EXIT

export TABBY_ETCD_ENDPOINTS="http://127.0.0.1:$port"
export TABBY_CONFIG="$dir/config.yaml"

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

step "Starting the embedded datastore (a real single-member etcd) on 127.0.0.1:$port"
"$tabby" datastore run --data-dir "$dir/etcd" \
	--listen-client-urls "$TABBY_ETCD_ENDPOINTS" \
	--listen-peer-urls "http://127.0.0.1:$((port + 1))" >"$dir/datastore.log" 2>&1 &
pid=$!
for _ in $(seq 100); do
	grep -q "etcd ready" "$dir/datastore.log" && break
	kill -0 "$pid" 2>/dev/null || { cat "$dir/datastore.log"; exit 1; }
	sleep 0.1
done

step "tabby apply -f examples/   (Tabby, Calico v3 and Kubernetes manifests)"
"$tabby" apply -f examples/

step "tabby apply -f examples/   (again: nothing changes)"
"$tabby" apply -f examples/

step "tabby get tiers; tabby get globalnetworkpolicies; tabby get networkpolicies -A"
"$tabby" get tiers
echo
"$tabby" get globalnetworkpolicies
echo
"$tabby" get networkpolicies -A -o wide

step "tabby get ippools -o wide"
"$tabby" get ippools -o wide

step "A bad manifest is rejected with the file, document, object and field, and nothing is written"
cat >"$dir/bad.yaml" <<'YAML'
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: fine, namespace: demo}
spec:
  selector: app == "db"
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [5432]}}]
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: web, namespace: demo}
spec:
  selector: app == "web"
  ingress: [{action: Allow, protocol: TCP, destination: {ports: [80, "90:70"]}}]
YAML
"$tabby" apply -f "$dir/bad.yaml" || true
"$tabby" get networkpolicy fine -n demo 2>&1 || true

step "Done. The datastore is stopped and its temporary directory removed."
