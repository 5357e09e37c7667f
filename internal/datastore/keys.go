package datastore

import (
	"errors"
	"fmt"
	"strings"
)

// Path validates k and returns its path, lower(kind)/[namespace/]name: the
// key layout every backend shares (the etcd backend puts its root in
// front). Kind and Name must be non-empty and no part may contain '/'.
func (k Key) Path() (string, error) {
	var errs []error
	for _, p := range []struct {
		field, v string
		required bool
	}{{"kind", k.Kind, true}, {"namespace", k.Namespace, false}, {"name", k.Name, true}} {
		if err := checkPart(p.field, p.v, p.required); err != nil {
			errs = append(errs, err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("invalid key: %w", err)
	}
	if k.Namespace == "" {
		return strings.ToLower(k.Kind) + "/" + k.Name, nil
	}
	return strings.ToLower(k.Kind) + "/" + k.Namespace + "/" + k.Name, nil
}

// Path validates p and returns the path prefix it selects: "" for every
// key, else a prefix ending in '/', so that kind "policy" does not select
// kind "policyx" and namespace "default" does not select a cluster-scoped
// object named "default".
func (p Prefix) Path() (string, error) {
	if p.Kind == "" {
		if p.Namespace != "" {
			return "", errors.New("invalid prefix: namespace set without kind")
		}
		return "", nil
	}
	var errs []error
	if err := checkPart("kind", p.Kind, true); err != nil {
		errs = append(errs, err)
	}
	if err := checkPart("namespace", p.Namespace, false); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("invalid prefix: %w", err)
	}
	if p.Namespace == "" {
		return strings.ToLower(p.Kind) + "/", nil
	}
	return strings.ToLower(p.Kind) + "/" + p.Namespace + "/", nil
}

func checkPart(field, v string, required bool) error {
	if v == "" {
		if required {
			return fmt.Errorf("%s is empty", field)
		}
		return nil
	}
	if strings.Contains(v, "/") {
		return fmt.Errorf("%s %q contains '/'", field, v)
	}
	return nil
}

// CheckOp validates one transaction operation and returns its key's path.
func CheckOp(op Op) (string, error) {
	switch op.Type {
	case OpCreate, OpUpdate, OpPut, OpDelete:
	default:
		return "", fmt.Errorf("operation on %s: unknown operation type %d", op.KV.Key, int(op.Type))
	}
	path, err := op.KV.Key.Path()
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", op.Type, op.KV.Key, err)
	}
	if op.KV.Revision < 0 {
		return "", fmt.Errorf("%s %s: negative revision %d", op.Type, op.KV.Key, op.KV.Revision)
	}
	return path, nil
}

// CheckCondition returns the error of op when its key exists at revision
// modRev (exists false: it does not exist), or nil if op may be applied.
// The error wraps ErrExists, ErrNotFound or ErrConflict.
func CheckCondition(op Op, exists bool, modRev int64) error {
	switch op.Type {
	case OpCreate:
		if exists {
			return fmt.Errorf("%s %s: %w", op.Type, op.KV.Key, ErrExists)
		}
	case OpUpdate, OpDelete:
		if !exists {
			return fmt.Errorf("%s %s: %w", op.Type, op.KV.Key, ErrNotFound)
		}
		if op.KV.Revision != 0 && op.KV.Revision != modRev {
			return fmt.Errorf("%s %s at revision %d (current %d): %w", op.Type, op.KV.Key, op.KV.Revision, modRev, ErrConflict)
		}
	}
	return nil
}

// String is the verb of the operation, for error messages.
func (t OpType) String() string {
	switch t {
	case OpCreate:
		return "creating"
	case OpUpdate:
		return "updating"
	case OpPut:
		return "putting"
	case OpDelete:
		return "deleting"
	}
	return "applying"
}
