package cni

import (
	"errors"
	"fmt"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/internal/ipam"
)

// Tabby's own CNI error codes; the CNI specification leaves 100 and up to
// plugins. The others used are the specification's: 4 (bad environment
// variables), 6 (undecodable configuration), 7 (invalid configuration), 8
// (bad network namespace), 11 (try again later: the datastore is
// unreachable), 50 (STATUS: not ready) and 999 (anything else).
const (
	// CodeNoAddress: IPAM has no address for the workload (pools
	// exhausted, or no pool for the family and node).
	CodeNoAddress uint = 100
	// CodePolicyTimeout: the node's agent did not report the endpoint's
	// policy programmed within policy_timeout.
	CodePolicyTimeout uint = 101
)

// cniError builds the error a command returns: a CNI error with code, a
// message that says what happened and what to do, and the cause as
// details.
func cniError(code uint, msg string, cause error) *types.Error {
	details := ""
	if cause != nil {
		details = cause.Error()
	}
	return types.NewError(code, "tabby: "+msg, details)
}

func configError(err error) *types.Error {
	return cniError(types.ErrInvalidNetworkConfig,
		"invalid network configuration; fix it in the CNI configuration directory (every field is described in docs/cni.md)", err)
}

// datastoreError words a datastore failure; endpoints may be nil.
func datastoreError(endpoints []string, err error) *types.Error {
	where := ""
	if len(endpoints) > 0 {
		where = fmt.Sprintf(" at %v", endpoints)
	}
	return cniError(types.ErrTryAgainLater, "cannot reach the datastore"+where+
		"; check that etcd is running and that the network configuration's datastore settings (endpoints, certificates, context) are right", err)
}

// ipamError words an IPAM failure.
func ipamError(err error) *types.Error {
	var te *types.Error
	if errors.As(err, &te) {
		return te // a delegated plugin's own error
	}
	switch {
	case errors.Is(err, ipam.ErrExhausted), errors.Is(err, ipam.ErrNoPool):
		return cniError(CodeNoAddress,
			"no IP address for the workload; add or enable an IPPool for this node and address family, or free addresses (tabby ipam show)", err)
	case errors.Is(err, ipam.ErrTooManyConflicts):
		return cniError(types.ErrTryAgainLater, "IPAM lost too many concurrent updates; try again", err)
	}
	return cniError(types.ErrInternal, "assigning IP addresses failed; check the datastore and `tabby ipam check`", err)
}

// netnsError words a failure to plumb or inspect a namespace.
func netnsError(netns string, err error) *types.Error {
	if errors.Is(err, errNoNetNS) {
		return cniError(types.ErrInvalidNetNS, fmt.Sprintf("the network namespace %s does not exist; the runtime must create it before ADD", netns), err)
	}
	return cniError(types.ErrInternal, "setting up the workload's interface failed", err)
}

// asCNIError returns err as a CNI error, wrapping errors without a code
// as internal errors with the given message.
func asCNIError(msg string, err error) error {
	if err == nil {
		return nil
	}
	var te *types.Error
	if errors.As(err, &te) {
		return te
	}
	return cniError(types.ErrInternal, msg, err)
}
