package selector

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// This file checks the parser, printer and evaluator against a naive
// reference: random expression trees are rendered to text in random
// spellings (whitespace, quote kinds, redundant parentheses, set order and
// duplicates), parsed, and compared with the tree's own evaluation.

// expr is the test's own expression tree, independent of the package's.
type expr struct {
	kind  string // "==", "!=", "in", "not in", "contains", "starts with", "ends with", "has", "all", "global", "!", "&&", "||"
	key   string
	value string
	set   []string
	kids  []*expr
}

var (
	genKeys   = []string{"a", "b", "c", "app.kubernetes.io/name", NamespaceLabel, "has", "in", "x-1_2.3"}
	genValues = []string{"", "x", "y", "xy", "yx", `say "hi"`, "it's", "a b", "{", "&& ||", "(", "é"}
	leafKinds = []string{"==", "!=", "in", "not in", "contains", "starts with", "ends with", "has", "all", "global"}
)

func genExpr(r *rand.Rand, depth int) *expr {
	if depth <= 0 || r.IntN(3) == 0 {
		e := &expr{kind: leafKinds[r.IntN(len(leafKinds))], key: pick(r, genKeys), value: pick(r, genValues)}
		if e.kind == "in" || e.kind == "not in" {
			for range r.IntN(4) {
				e.set = append(e.set, pick(r, genValues))
			}
		}
		return e
	}
	switch r.IntN(3) {
	case 0:
		return &expr{kind: "!", kids: []*expr{genExpr(r, depth-1)}}
	case 1:
		return &expr{kind: "&&", kids: genKids(r, depth)}
	default:
		return &expr{kind: "||", kids: genKids(r, depth)}
	}
}

func genKids(r *rand.Rand, depth int) []*expr {
	kids := make([]*expr, 2+r.IntN(3))
	for i := range kids {
		kids[i] = genExpr(r, depth-1)
	}
	return kids
}

func pick(r *rand.Rand, from []string) string { return from[r.IntN(len(from))] }

// eval is the reference evaluator: the Calico semantics, written plainly.
func (e *expr) eval(m map[string]string) bool {
	v, ok := m[e.key]
	switch e.kind {
	case "==":
		return ok && v == e.value
	case "!=":
		return !ok || v != e.value
	case "in":
		return ok && slices.Contains(e.set, v)
	case "not in":
		return !ok || !slices.Contains(e.set, v)
	case "contains":
		return ok && strings.Contains(v, e.value)
	case "starts with":
		return ok && strings.HasPrefix(v, e.value)
	case "ends with":
		return ok && strings.HasSuffix(v, e.value)
	case "has":
		return ok
	case "all":
		return true
	case "global":
		_, ns := m[NamespaceLabel]
		return !ns
	case "!":
		return !e.kids[0].eval(m)
	case "&&":
		for _, k := range e.kids {
			if !k.eval(m) {
				return false
			}
		}
		return true
	case "||":
		for _, k := range e.kids {
			if k.eval(m) {
				return true
			}
		}
		return false
	}
	panic("unknown kind " + e.kind)
}

// render writes e in a random valid spelling. prec is the binding strength
// the context needs: 0 anywhere, 1 as an operand of &&, 2 as an operand of !.
func (e *expr) render(r *rand.Rand, b *strings.Builder, prec int) {
	need := e.kind == "||" && prec >= 1 || e.kind == "&&" && prec >= 2
	parens := need || r.IntN(8) == 0
	if parens {
		b.WriteString("(")
		space(r, b)
	}
	switch e.kind {
	case "has":
		b.WriteString("has")
		space(r, b)
		b.WriteString("(")
		space(r, b)
		b.WriteString(e.key)
		space(r, b)
		b.WriteString(")")
	case "all", "global":
		b.WriteString(e.kind)
		space(r, b)
		b.WriteString("(")
		space(r, b)
		b.WriteString(")")
	case "in", "not in":
		b.WriteString(e.key)
		space1(r, b)
		b.WriteString(strings.ReplaceAll(e.kind, " ", spaces(r)))
		space(r, b)
		b.WriteString("{")
		members := slices.Clone(e.set)
		if len(members) > 0 && r.IntN(3) == 0 {
			members = append(members, members[r.IntN(len(members))])
		}
		r.Shuffle(len(members), func(i, j int) { members[i], members[j] = members[j], members[i] })
		for i, m := range members {
			if i > 0 {
				space(r, b)
				b.WriteString(",")
			}
			space(r, b)
			quote(r, b, m)
		}
		space(r, b)
		b.WriteString("}")
	case "==", "!=":
		b.WriteString(e.key)
		space(r, b)
		b.WriteString(e.kind)
		space(r, b)
		quote(r, b, e.value)
	case "contains", "starts with", "ends with":
		b.WriteString(e.key)
		space1(r, b)
		b.WriteString(strings.ReplaceAll(e.kind, " ", spaces(r)))
		space(r, b)
		quote(r, b, e.value)
	case "!":
		b.WriteString("!")
		space(r, b)
		e.kids[0].render(r, b, 2)
	case "&&", "||":
		kidPrec := 0
		if e.kind == "&&" {
			kidPrec = 1
		}
		for i, k := range e.kids {
			if i > 0 {
				space(r, b)
				b.WriteString(e.kind)
				space(r, b)
			}
			k.render(r, b, kidPrec)
		}
	}
	if parens {
		space(r, b)
		b.WriteString(")")
	}
}

// space writes zero or more blanks; space1 writes at least one.
func space(r *rand.Rand, b *strings.Builder) {
	if r.IntN(2) == 0 {
		b.WriteString(spaces(r))
	}
}

func space1(r *rand.Rand, b *strings.Builder) { b.WriteString(spaces(r)) }

func spaces(r *rand.Rand) string { return pick(r, []string{" ", "  ", "\t", "\n", " \r\n "}) }

func quote(r *rand.Rand, b *strings.Builder, s string) {
	q := pick(r, []string{`"`, `'`})
	if strings.Contains(s, q) {
		q = map[string]string{`"`: `'`, `'`: `"`}[q]
	}
	b.WriteString(q + s + q)
}

func genLabels(r *rand.Rand) map[string]string {
	m := map[string]string{}
	for _, k := range genKeys {
		if r.IntN(2) == 0 {
			m[k] = pick(r, genValues)
		}
	}
	return m
}

func TestRandomSelectors(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for i := range 3000 {
		e := genExpr(r, 1+i%5)
		var b1, b2 strings.Builder
		e.render(r, &b1, 0)
		e.render(r, &b2, 0)

		sel, err := Parse(b1.String())
		if err != nil {
			t.Fatalf("Parse(%q): %v", b1.String(), err)
		}
		other, err := Parse(b2.String())
		if err != nil {
			t.Fatalf("Parse(%q): %v", b2.String(), err)
		}
		canonical := sel.String()
		if other.String() != canonical {
			t.Fatalf("two spellings of one tree print differently:\n%q -> %q\n%q -> %q",
				b1.String(), canonical, b2.String(), other.String())
		}
		again, err := Parse(canonical)
		if err != nil {
			t.Fatalf("Parse(%q) (canonical of %q): %v", canonical, b1.String(), err)
		}
		if again.String() != canonical || again.UniqueID() != sel.UniqueID() {
			t.Fatalf("canonical form %q reprints as %q", canonical, again.String())
		}
		for range 20 {
			m := genLabels(r)
			want := e.eval(m)
			if got := sel.Evaluate(Map(m)); got != want {
				t.Fatalf("Parse(%q).Evaluate(%v) = %v, reference says %v", b1.String(), m, got, want)
			}
			if got := again.Evaluate(Map(m)); got != want {
				t.Fatalf("Parse(%q).Evaluate(%v) = %v, reference says %v (canonical of %q)", canonical, m, got, want, b1.String())
			}
		}
	}
}
