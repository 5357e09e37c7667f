package selector

import (
	"errors"
	"testing"
)

// FuzzParse checks that any input either fails with a well-formed
// *ParseError or parses to a selector whose canonical form parses back to
// the same canonical form, ID and behaviour. Seeds beyond the f.Add calls
// are in testdata/fuzz/FuzzParse, together with any crashers found.
func FuzzParse(f *testing.F) {
	for _, s := range []string{
		``,
		`all()`,
		`global()`,
		`role == "web" && env in {"prod", "staging"} && has(tier)`,
		`a == "x" && (b in {"q", "p"} || !has(c))`,
		`!(a != 'say "hi"' || b not in {})`,
		`a contains "x" || b starts with 'y' || c ends with ""`,
		`has == "x" && in in {"in"} && not not in {'not'}`,
		`app.kubernetes.io/name == "shop" && !global()`,
		`((((!!has(a)))))`,
		`a == 'x' &&`,
		`a in {"x",}`,
		`a == "unterminated`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		sel, err := Parse(in)
		if err != nil {
			var perr *ParseError
			if !errors.As(err, &perr) {
				t.Fatalf("Parse(%q) error %T, want *ParseError", in, err)
			}
			if perr.Pos < 0 || perr.Pos > len(in) || perr.Input != in || perr.Msg == "" {
				t.Fatalf("Parse(%q) returned malformed error %+v", in, *perr)
			}
			return
		}
		canonical := sel.String()
		again, err := Parse(canonical)
		if err != nil {
			t.Fatalf("Parse(%q) (canonical of %q): %v", canonical, in, err)
		}
		if again.String() != canonical {
			t.Fatalf("canonical form of %q is %q, which reprints as %q", in, canonical, again.String())
		}
		if again.UniqueID() != sel.UniqueID() {
			t.Fatalf("canonical form %q changes the UniqueID", canonical)
		}
		for _, m := range fuzzLabels(sel.root) {
			if got, want := again.Evaluate(m), sel.Evaluate(m); got != want {
				t.Fatalf("on %v, Parse(%q) gives %v but its canonical form %q gives %v", m, in, want, canonical, got)
			}
		}
	})
}

// fuzzLabels returns label maps that are likely to make parts of the tree
// true and false: the empty map, and maps built from the keys and literals
// the selector itself uses.
func fuzzLabels(root *node) []Map {
	keys := root.appendKeys(nil)
	values := appendLiterals(root, []string{"", "x"})
	maps := []Map{{}, {NamespaceLabel: "ns"}}
	for i := range 6 {
		m := Map{}
		for j, k := range keys {
			if (i+j)%3 != 0 {
				m[k] = values[(i*7+j)%len(values)]
			}
		}
		maps = append(maps, m)
	}
	return maps
}

func appendLiterals(n *node, values []string) []string {
	values = append(values, n.set...)
	if n.value != "" {
		values = append(values, n.value, n.value+"~", "~"+n.value)
	}
	for _, k := range n.kids {
		values = appendLiterals(k, values)
	}
	return values
}
