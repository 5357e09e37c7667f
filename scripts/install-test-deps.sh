#!/usr/bin/env bash
# Installs everything `make test` needs, idempotently: Debian packages and
# pinned `go install`ed tools. Safe to run again; it only installs what is
# missing. Needs root for apt-get.
set -euo pipefail

# Debian packages used by the tests (kernel tools for namespace tests).
# iperf3 drives the dataplane benchmark; traceroute the lab's hop test.
debs=(iproute2 nftables iputils-ping bird2 iperf3 traceroute)

missing=()
for p in "${debs[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
	if [ "$(id -u)" != 0 ]; then
		echo "install-test-deps: need root to install ${missing[*]} (run: sudo make test)" >&2
		exit 1
	fi
	echo "install-test-deps: apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
	# Debian starts BIRD as a service in the machine's own namespace when
	# it installs bird2; the tests run their own BIRDs in namespaces, and
	# nothing of ours should route the machine.
	if [[ " ${missing[*]} " == *" bird2 "* ]] && [ -d /run/systemd/system ]; then
		systemctl disable --now bird.service >/dev/null 2>&1 || true
	fi
fi

# Go tools, pinned. GOBIN defaults to $(go env GOPATH)/bin.
gobin=$(go env GOBIN)
[ -n "$gobin" ] || gobin="$(go env GOPATH)/bin"
install_go_tool() { # name module@version
	local name=$1 mod=$2
	if [ -x "$gobin/$name" ] && grep -qxF "${mod#*@}" "$gobin/.$name.version" 2>/dev/null; then
		return
	fi
	echo "install-test-deps: go install $mod"
	GOFLAGS= go install "$mod"
	echo "${mod#*@}" >"$gobin/.$name.version"
}
install_go_tool staticcheck honnef.co/go/tools/cmd/staticcheck@v0.8.2
# CNI: the real cnitool, at the version of the cni module in go.mod, and
# reference plugins (portmap uses its nftables backend: Debian's nftables
# above; iptables is not needed).
install_go_tool cnitool "github.com/containernetworking/cni/cnitool@$(go list -m -f '{{.Version}}' github.com/containernetworking/cni)"
install_go_tool portmap github.com/containernetworking/plugins/plugins/meta/portmap@v1.9.1
install_go_tool host-local github.com/containernetworking/plugins/plugins/ipam/host-local@v1.9.1
