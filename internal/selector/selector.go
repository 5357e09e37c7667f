package selector

import (
	"crypto/sha256"
	"encoding/base64"
	"slices"
)

// NamespaceLabel is the implicit label carried by namespaced endpoints and
// network sets; its value is the namespace name. global() matches exactly the
// label sets that lack it.
const NamespaceLabel = "tabby.dev/namespace"

// uniqueIDLen is the number of base64url characters of the SHA-256 digest kept
// in UniqueID (168 bits). With the "s:" prefix the ID is 30 bytes, short
// enough for any kernel set name.
const uniqueIDLen = 28

// Labels is a read-only view of an object's labels. Get must not allocate if
// Evaluate is to stay allocation free, and must be safe for concurrent use if
// the same Labels is evaluated from several goroutines.
type Labels interface {
	// Get returns the value of the label key and whether it is present.
	Get(key string) (value string, ok bool)
}

// Map is the simplest Labels: a plain map from label key to value. A nil Map
// has no labels.
type Map map[string]string

// Get implements Labels.
func (m Map) Get(key string) (string, bool) {
	v, ok := m[key]
	return v, ok
}

// noLabels is what Evaluate uses for a nil Labels.
type noLabels struct{}

func (noLabels) Get(string) (string, bool) { return "", false }

// Selector is a parsed label selector. It is immutable after Parse and safe for
// concurrent use. The zero value is not valid; use Parse or MustParse.
type Selector struct {
	root      *node
	canonical string
	id        string
	keys      []string
}

// Parse parses a selector in the Calico selector language. The empty (or
// all-blank) string parses to all(). A non-nil error is always a *ParseError.
func Parse(s string) (*Selector, error) {
	root, err := parse(s)
	if err != nil {
		return nil, err
	}
	return newSelector(root), nil
}

// MustParse is like Parse but panics on error. It is meant for tests and
// package-level constants, never for user input.
func MustParse(s string) *Selector {
	sel, err := Parse(s)
	if err != nil {
		panic(err)
	}
	return sel
}

func newSelector(root *node) *Selector {
	canonical := root.String()
	sum := sha256.Sum256([]byte(canonical))
	keys := root.appendKeys(nil)
	slices.Sort(keys)
	return &Selector{
		root:      root,
		canonical: canonical,
		id:        "s:" + base64.RawURLEncoding.EncodeToString(sum[:])[:uniqueIDLen],
		keys:      slices.Compact(keys),
	}
}

// String returns the canonical form of the selector (see the printing rules
// in print.go). Parsing it yields a selector with the same String, UniqueID
// and behaviour.
func (s *Selector) String() string { return s.canonical }

// UniqueID returns a stable identifier derived from the canonical form: "s:"
// followed by 28 base64url characters of its SHA-256 digest. Selectors with
// equal String have equal UniqueID, so it can be used to share one IP set
// among all rules that use the same selector.
func (s *Selector) UniqueID() string { return s.id }

// LabelKeys returns the sorted, de-duplicated label keys that the selector
// reads. global() reads NamespaceLabel, so it contributes that key. The
// result is a fresh slice that the caller may modify.
func (s *Selector) LabelKeys() []string { return slices.Clone(s.keys) }

// Evaluate reports whether the labels match the selector. A nil Labels has no
// labels. Evaluate allocates nothing (provided l.Get does not).
func (s *Selector) Evaluate(l Labels) bool {
	if l == nil {
		l = noLabels{}
	}
	return s.root.eval(l)
}

// UsesGlobal reports whether global() appears anywhere in the selector.
func (s *Selector) UsesGlobal() bool {
	var walk func(n *node) bool
	walk = func(n *node) bool {
		return n.op == opGlobal || slices.ContainsFunc(n.kids, walk)
	}
	return walk(s.root)
}

// IsGlobal reports whether the selector is exactly global().
func (s *Selector) IsGlobal() bool { return s.root.op == opGlobal }
