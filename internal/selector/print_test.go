package selector

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestString(t *testing.T) {
	tests := []struct{ in, want string }{
		{``, `all()`},
		{` `, `all()`},
		{`all()`, `all()`},
		{`all ( )`, `all()`},
		{`global ()`, `global()`},
		{`has( a )`, `has(a)`},
		{`a=='x'`, `a == "x"`},
		{`a!="x"`, `a != "x"`},
		{"a\tcontains\n'x'", `a contains "x"`},
		{`a starts   with "x"`, `a starts with "x"`},
		{`a ends with"x"`, `a ends with "x"`},
		{`a in{'q','p','q',"a"}`, `a in {"a", "p", "q"}`},
		{`a not in {"b","a"}`, `a not in {"a", "b"}`},
		{`a in {}`, `a in {}`},
		{`a not in { }`, `a not in {}`},
		{`a in {"", ""}`, `a in {""}`},

		// Quotes: double unless the value holds a double quote.
		{`a == 'it"s'`, `a == 'it"s'`},
		{`a == "it's"`, `a == "it's"`},
		{`a == 'it s'`, `a == "it s"`},
		{`a in {'"', "'", 'x'}`, `a in {'"', "'", "x"}`},
		{`a == ""`, `a == ""`},

		// Parentheses only where precedence needs them.
		{`((a == "x"))`, `a == "x"`},
		{`(a == "x") && (b == "y")`, `a == "x" && b == "y"`},
		{`(a == "x" && b == "y") || c == "z"`, `a == "x" && b == "y" || c == "z"`},
		{`a == "x" && (b == "y" || c == "z")`, `a == "x" && (b == "y" || c == "z")`},
		{`a=="x"&&(b in {"q","p"}||!has(c))`, `a == "x" && (b in {"p", "q"} || !has(c))`},
		{`!(a == "x")`, `!a == "x"`},
		{`!(has(a))`, `!has(a)`},
		{`! ! has(a)`, `!!has(a)`},
		{`!(!(has(a)))`, `!!has(a)`},
		{`!(a == "x" && b == "y")`, `!(a == "x" && b == "y")`},
		{`!(a == "x" || b == "y")`, `!(a == "x" || b == "y")`},
		{`!((a == "x") || (b == "y"))`, `!(a == "x" || b == "y")`},
		{`(!has(a)) && !has(b)`, `!has(a) && !has(b)`},

		// Same-operator nesting is flattened.
		{`a == "1" && (b == "2" && (c == "3" && d == "4"))`, `a == "1" && b == "2" && c == "3" && d == "4"`},
		{`(a == "1" || b == "2") || (c == "3" || d == "4")`, `a == "1" || b == "2" || c == "3" || d == "4"`},
		{`(a == "1" || b == "2") && (c == "3" || d == "4")`, `(a == "1" || b == "2") && (c == "3" || d == "4")`},
		{`a == "1" || (b == "2" && (c == "3" || d == "4"))`, `a == "1" || b == "2" && (c == "3" || d == "4")`},
		{`!(!(a == "1" || b == "2") && has(c))`, `!(!(a == "1" || b == "2") && has(c))`},

		// Operand order is kept.
		{`b == "1" && a == "2"`, `b == "1" && a == "2"`},

		// Keywords as keys.
		{`has==""`, `has == ""`},
		{`in in {}`, `in in {}`},
		{`not not in {}`, `not not in {}`},
		{`starts starts with "x"`, `starts starts with "x"`},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.in)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.in, err)
			continue
		}
		if got := sel.String(); got != tt.want {
			t.Errorf("Parse(%q).String() = %q, want %q", tt.in, got, tt.want)
		}
		again, err := Parse(sel.String())
		if err != nil {
			t.Errorf("Parse(%q) (canonical of %q): %v", sel.String(), tt.in, err)
			continue
		}
		if again.String() != sel.String() {
			t.Errorf("Parse(%q).String() = %q, not a fixed point", sel.String(), again.String())
		}
		if again.UniqueID() != sel.UniqueID() {
			t.Errorf("UniqueID of %q and of its canonical form differ: %q, %q", tt.in, sel.UniqueID(), again.UniqueID())
		}
	}
}

func TestUniqueID(t *testing.T) {
	a := MustParse(`a in {"y", "x"} && has(b)`)
	b := MustParse(`(a in {'x','y','x'}) && (has(b))`)
	c := MustParse(`has(b) && a in {"x", "y"}`)
	if a.UniqueID() != b.UniqueID() {
		t.Errorf("equivalent spellings have different IDs: %q, %q", a.UniqueID(), b.UniqueID())
	}
	if a.UniqueID() == c.UniqueID() {
		t.Errorf("different canonical forms %q and %q share ID %q", a, c, a.UniqueID())
	}
	id := a.UniqueID()
	if !strings.HasPrefix(id, "s:") || len(id) != 2+uniqueIDLen {
		t.Errorf("UniqueID() = %q, want s: and %d characters", id, uniqueIDLen)
	}
	// The ID is a stable function of the canonical text: other packages and
	// the kernel's set names rely on it not changing between releases.
	if got, want := MustParse("").UniqueID(), "s:JagxTFX-YkWVyoC8GnqNsRzbjjW6"; got != want {
		t.Errorf("UniqueID of all() = %q, want %q", got, want)
	}
}

func TestLabelKeys(t *testing.T) {
	tests := []struct {
		in   string
		want []string
	}{
		{``, nil},
		{`all()`, nil},
		{`global()`, []string{NamespaceLabel}},
		{`b == "x" && (a in {} || !has(c)) && b != "y" && a contains "z"`, []string{"a", "b", "c"}},
		{`z starts with "" || y ends with "" || global() || x not in {}`, []string{"tabby.dev/namespace", "x", "y", "z"}},
	}
	for _, tt := range tests {
		sel := MustParse(tt.in)
		got := sel.LabelKeys()
		if diff := cmp.Diff(tt.want, got); diff != "" {
			t.Errorf("Parse(%q).LabelKeys() mismatch (-want +got):\n%s", tt.in, diff)
		}
		if len(got) > 0 {
			got[0] = "mutated"
			if sel.LabelKeys()[0] == "mutated" {
				t.Errorf("LabelKeys of %q returns the selector's own slice", tt.in)
			}
		}
	}
}
