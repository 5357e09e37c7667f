package v1

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"strconv"
)

// ValidateUpdate checks that updated may replace old: it returns the
// errors of Validate(updated) and one *FieldError for each immutable field
// that changed. Immutable are the kind, metadata.name and
// metadata.namespace of every object, an IPPool's spec.cidr and
// spec.blockSize (as in Calico: allocations are made in blocks of the
// pool), and a WorkloadEndpoint's spec.node (Tabby's choice: the
// endpoint's addresses are routed to its node; a workload that moves is a
// new endpoint). Both objects should have had SetDefaults applied.
func ValidateUpdate(old, updated Object) error {
	if reflect.TypeOf(old) != reflect.TypeOf(updated) {
		return fmt.Errorf("updating %T with %T: the kind cannot change", old, updated)
	}
	var errs fieldErrors
	om, um := old.GetObjectMeta(), updated.GetObjectMeta()
	immutable(&errs, "metadata.name", om.Name, um.Name)
	immutable(&errs, "metadata.namespace", om.Namespace, um.Namespace)
	switch o := old.(type) {
	case *IPPool:
		u := updated.(*IPPool)
		immutable(&errs, "spec.cidr", o.Spec.CIDR, u.Spec.CIDR)
		immutable(&errs, "spec.blockSize", strconv.Itoa(poolBlockSize(&o.Spec)), strconv.Itoa(poolBlockSize(&u.Spec)))
	case *WorkloadEndpoint:
		immutable(&errs, "spec.node", o.Spec.Node, updated.(*WorkloadEndpoint).Spec.Node)
	}
	return errors.Join(Validate(updated), errors.Join(errs.errs()...))
}

func immutable(errs *fieldErrors, p fieldPath, old, updated string) {
	if old != updated {
		errs.addf(p, updated, "field is immutable: it was %q", old)
	}
}

// poolBlockSize returns a pool's block size, defaulted when unset.
func poolBlockSize(s *IPPoolSpec) int {
	if s.BlockSize != 0 {
		return s.BlockSize
	}
	if pfx, err := netip.ParsePrefix(s.CIDR); err == nil {
		return DefaultBlockSize(pfx.Addr().Is6())
	}
	return 0
}

// CheckPoolOverlap returns an error for each pair of pools whose CIDRs
// overlap, naming both pools; nil if none do. Pools with invalid CIDRs are
// left to Validate.
func CheckPoolOverlap(pools []*IPPool) error {
	type parsed struct {
		name string
		pfx  netip.Prefix
	}
	var ps []parsed
	for _, p := range pools {
		if pfx, err := netip.ParsePrefix(p.Spec.CIDR); err == nil {
			ps = append(ps, parsed{p.Metadata.Name, pfx.Masked()})
		}
	}
	var errs []error
	for i := range ps {
		for j := i + 1; j < len(ps); j++ {
			if ps[i].pfx.Overlaps(ps[j].pfx) {
				errs = append(errs, fmt.Errorf("IPPool %q (%s) overlaps IPPool %q (%s)",
					ps[i].name, ps[i].pfx, ps[j].name, ps[j].pfx))
			}
		}
	}
	return errors.Join(errs...)
}
