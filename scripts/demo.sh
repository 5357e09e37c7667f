#!/usr/bin/env bash
# The demo behind `sudo make demo`: a three-node Tabby lab in network
# namespaces (BGP mesh over a bridge fabric), three workloads, the
# reachability matrix before and after a policy, and how to go on. The lab
# stays up afterwards; `tabby lab down --name demo` removes all of it.
set -euo pipefail
cd "$(dirname "$0")/.."
tabby=$(pwd)/bin/tabby
name=${TABBY_DEMO_LAB:-demo}

step() { printf '\n\033[1m==> %s\033[0m\n' "$*"; }

if "$tabby" lab ls | awk 'NR > 1 {print $1}' | grep -qx "$name"; then
	step "Removing the previous lab $name"
	"$tabby" lab down --name "$name"
fi

step "tabby lab up --name $name --nodes 3 --ipv6"
"$tabby" lab up --name "$name" --nodes 3 --ipv6
lab=(--name "$name")

step "tabby get nodes; tabby get ippools   (through the context lab-$name)"
"$tabby" get nodes
"$tabby" get ippools -o wide

step "Three workloads, one per node, each with an echo server on tcp/80"
"$tabby" lab "${lab[@]}" run frontend --node n1 --labels app=frontend --serve tcp:80,udp:53
"$tabby" lab "${lab[@]}" run backend --node n2 --labels app=backend --serve tcp:80
"$tabby" lab "${lab[@]}" run db --node n3 --labels app=db --serve tcp:80

step "Routes on n1: its own workloads, blackholed blocks, and BGP-learned blocks of n2 and n3"
"$tabby" lab "${lab[@]}" exec n1 -- ip route
"$tabby" lab "${lab[@]}" exec n1 -- ip -6 route show proto 80

step "tabby lab matrix --proto tcp --port 80   (no policy yet: the profile lab-open allows all)"
"$tabby" lab "${lab[@]}" matrix --proto tcp --port 80

step "A policy: only the frontend may reach the backend, only the backend may reach the db"
policy=$(mktemp /tmp/tabby-demo-policy.XXXXXX.yaml)
expect=
trap 'rm -f "$policy" "$expect"' EXIT
cat >"$policy" <<'YAML'
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: backend, namespace: default}
spec:
  selector: app == 'backend'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'frontend'}, destination: {ports: [80]}}
---
apiVersion: tabby.dev/v1
kind: NetworkPolicy
metadata: {name: db, namespace: default}
spec:
  selector: app == 'db'
  types: [Ingress]
  ingress:
  - {action: Allow, protocol: TCP, source: {selector: app == 'backend'}, destination: {ports: [80]}}
YAML
cat "$policy"
"$tabby" apply -f "$policy"

step "tabby lab matrix --proto tcp --port 80 --expect FILE   (IPv4, then IPv6)"
expect=$(mktemp /tmp/tabby-demo-expect.XXXXXX)
cat >"$expect" <<'EXPECT'
frontend backend allow
frontend db      deny
backend  db      allow
backend  frontend allow
db       frontend allow
db       backend deny
EXPECT
# matrix first waits until every agent has applied the policy (no sleep).
"$tabby" lab "${lab[@]}" matrix --proto tcp --port 80 --expect "$expect"
"$tabby" lab "${lab[@]}" matrix --proto tcp --port 80 --family 6 --expect "$expect"

step "Go on from here"
cat <<EOF2
  export PATH="$(pwd)/bin:\$PATH"     # the tabby binary that make demo built
  tabby lab ls
  tabby lab probe frontend db --proto icmp --family 6
  tabby lab exec n2 -- nft list ruleset
  tabby lab probe frontend db --proto tcp --port 80
  tabby get wep -A     # endpoint names come from the CNI plugin: NODE-cni-NAME-eth0
  tabby policy trace --from default/n1-cni-frontend-eth0 --to default/n3-cni-db-eth0 --port 80
  tabby lab run extra --node n1 --labels app=frontend --serve tcp:80
  tabby lab move frontend --node n2   # live migration: same addresses, gap measured
  tabby lab rm extra
  tabby lab down --name $name
EOF2
