package nft

import (
	"crypto/sha256"
	"encoding/base32"
	"strings"

	"github.com/tabbynet/tabby/internal/policy"
)

// maxNameLen bounds the names of our chains and sets. The kernel allows
// 255 bytes (NFT_NAME_MAXLEN); we keep names short enough to read in
// `nft list` output and hash anything longer.
const maxNameLen = 64

var hashEnc = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// objName returns kind + "-" + readable when readable is a valid nft
// identifier and the result fits maxNameLen, else kind + "-_" + 16 base32
// characters of SHA-256(readable) (80 bits). A readable part never starts
// with '_', so hashed names never collide with readable ones.
func objName(kind, readable string) string {
	if validIdent(readable) && len(kind)+1+len(readable) <= maxNameLen {
		return kind + "-" + readable
	}
	sum := sha256.Sum256([]byte(readable))
	return kind + "-_" + hashEnc.EncodeToString(sum[:10])
}

// Fixed names: base chains, dispatch chains, maps and sets.
const (
	chainRaw       = "raw-prerouting"
	chainForward   = "forward"
	chainInput     = "input"
	chainOutput    = "output"
	chainNAT       = "nat-postrouting"
	chainFromWl    = "from-wl"
	chainToWl      = "to-wl"
	chainWlToHost  = "wl-to-host"
	chainHepIn     = "hep-in"
	chainHepOut    = "hep-out"
	chainHepFwdIn  = "hep-fwd-in"
	chainHepFwdOut = "hep-fwd-out"
	chainFailIn    = "failsafe-in"
	chainFailOut   = "failsafe-out"

	// The dispatch maps have the names of the chains that use them.
	mapFromWl    = chainFromWl
	mapToWl      = chainToWl
	mapHepIn     = chainHepIn
	mapHepOut    = chainHepOut
	mapHepFwdIn  = chainHepFwdIn
	mapHepFwdOut = chainHepFwdOut

	setSpoof4   = "spoof-v4"
	setSpoof6   = "spoof-v6"
	setNATOut4  = "nat-out-v4"
	setNATOut6  = "nat-out-v6"
	setAllPool4 = "pools-v4"
	setAllPool6 = "pools-v6"
)

// Kinds of per-object chains.
const (
	kindPolicyIn   = "pi"  // policy, ingress rules
	kindPolicyOut  = "po"  // policy, egress rules
	kindProfileIn  = "ri"  // profile, ingress rules
	kindProfileOut = "ro"  // profile, egress rules
	kindToWl       = "tw"  // to workload: its ingress chain
	kindFromWl     = "fw"  // from workload: its egress chain
	kindHostIn     = "hi"  // host endpoint ingress (to the host)
	kindHostOut    = "ho"  // host endpoint egress (from the host)
	kindHostFwdIn  = "hfi" // host endpoint, forwarded, arriving
	kindHostFwdOut = "hfo" // host endpoint, forwarded, leaving
)

// policyChainName names the chain of a policy's rules in one direction:
// "pi-np/NAMESPACE/NAME", "po-gnp/NAME" (the ID with its first ':' turned
// into '/'), hashed when long.
func policyChainName(id policy.PolicyID, d policy.Direction) string {
	kind := kindPolicyIn
	if d == policy.Egress {
		kind = kindPolicyOut
	}
	return objName(kind, strings.Replace(string(id), ":", "/", 1))
}

// profileChainName names the chain of a profile's rules in one direction.
func profileChainName(id policy.ProfileID, d policy.Direction) string {
	kind := kindProfileIn
	if d == policy.Egress {
		kind = kindProfileOut
	}
	return objName(kind, string(id))
}

// addrSetName names the kernel set holding one family's members of an
// address set: "s-<id>-v4" (hash set of /32s) or "s-<id>-v4net"
// (interval set). The kind is part of the name, so a set that turns from
// one kind into the other is a new set: rules move to it in the same
// transaction and the old one is deleted after them.
func addrSetName(id policy.SetID, fam family, interval bool) string {
	suffix := "-" + fam.String()
	if interval {
		suffix += "net"
	}
	return setBase(id) + suffix
}

// namedPortSetName names one family's half of a named-port set.
func namedPortSetName(id policy.SetID, fam family) string {
	return setBase(id) + "-" + fam.String()
}

// setBase turns a SetID ("s:XXXX", "p:XXXX") into "s-XXXX", hashing IDs
// that do not fit.
func setBase(id policy.SetID) string {
	kind, rest, ok := strings.Cut(string(id), ":")
	if !ok || !validIdent(kind) {
		return objName("set", string(id))
	}
	return objName(kind, rest)
}
