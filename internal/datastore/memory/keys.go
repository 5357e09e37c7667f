package memory

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tabbynet/tabby/internal/datastore"
)

// keyPath validates key and returns its path lower(kind)/[namespace/]name,
// the etcd backend's key without its "/tabby/v1/" root.
func keyPath(key datastore.Key) (string, error) {
	var errs []error
	if err := checkPart("kind", key.Kind, true); err != nil {
		errs = append(errs, err)
	}
	if err := checkPart("namespace", key.Namespace, false); err != nil {
		errs = append(errs, err)
	}
	if err := checkPart("name", key.Name, true); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("invalid key: %w", err)
	}
	k := normalize(key)
	if k.Namespace == "" {
		return k.Kind + "/" + k.Name, nil
	}
	return k.Kind + "/" + k.Namespace + "/" + k.Name, nil
}

// prefixPath validates prefix and returns the path prefix it selects; it
// ends in '/' unless it is empty (every key).
func prefixPath(prefix datastore.Prefix) (string, error) {
	if prefix.Kind == "" {
		if prefix.Namespace != "" {
			return "", errors.New("invalid prefix: namespace set without kind")
		}
		return "", nil
	}
	var errs []error
	if err := checkPart("kind", prefix.Kind, true); err != nil {
		errs = append(errs, err)
	}
	if err := checkPart("namespace", prefix.Namespace, false); err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return "", fmt.Errorf("invalid prefix: %w", err)
	}
	if prefix.Namespace == "" {
		return strings.ToLower(prefix.Kind) + "/", nil
	}
	return strings.ToLower(prefix.Kind) + "/" + prefix.Namespace + "/", nil
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

// normalize returns key with its Kind lower-cased, as it is stored.
func normalize(key datastore.Key) datastore.Key {
	key.Kind = strings.ToLower(key.Kind)
	return key
}
