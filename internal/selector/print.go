package selector

import "strings"

// The canonical form, produced by String, is defined by these rules:
//
//   - Comparisons are `key == "v"`, `key != "v"`, `key contains "v"`,
//     `key starts with "v"` and `key ends with "v"`: one space on each side of
//     the operator.
//   - Sets are `key in {"a", "b"}` and `key not in {"a", "b"}`: members sorted
//     by byte value, duplicates removed, separated by ", "; an empty set is
//     `{}`.
//   - Functions are `has(key)`, `all()` and `global()`, with no spaces. The
//     empty selector prints as `all()`.
//   - A string literal is double-quoted, unless it contains a double quote;
//     then it is single-quoted. The language has no escapes, so a literal
//     cannot contain both quote characters.
//   - && and || have one space on each side. Nested uses of the same operator
//     are flattened: `a && (b && c)` prints as `a && b && c`.
//   - Parentheses appear only where precedence (! over && over ||) needs them:
//     around an || operand of &&, and around an && or || operand of !.
//     Comparisons and functions bind tighter than !, so `!(a == "x")` prints
//     as `!a == "x"`, which parses back to the same tree.
//   - ! is written directly before its operand, without a space.
//
// Operand order is kept as written; it is not sorted.

// String returns the canonical text of the subtree rooted at n.
func (n *node) String() string {
	var b strings.Builder
	n.write(&b)
	return b.String()
}

func (n *node) write(b *strings.Builder) {
	switch n.op {
	case opAll:
		b.WriteString("all()")
	case opGlobal:
		b.WriteString("global()")
	case opHas:
		b.WriteString("has(")
		b.WriteString(n.key)
		b.WriteString(")")
	case opEq, opNe, opContains, opStartsWith, opEndsWith:
		b.WriteString(n.key)
		b.WriteString(opText[n.op])
		writeQuoted(b, n.value)
	case opIn, opNotIn:
		b.WriteString(n.key)
		b.WriteString(opText[n.op])
		b.WriteString("{")
		for i, m := range n.set {
			if i > 0 {
				b.WriteString(", ")
			}
			writeQuoted(b, m)
		}
		b.WriteString("}")
	case opNot:
		b.WriteString("!")
		x := n.kids[0]
		writeOperand(b, x, x.op == opAnd || x.op == opOr)
	case opAnd, opOr:
		for i, x := range n.kids {
			if i > 0 {
				b.WriteString(opText[n.op])
			}
			writeOperand(b, x, n.op == opAnd && x.op == opOr)
		}
	default:
		panic("selector: unknown node op")
	}
}

// opText is the operator text of binary operators, with its spaces.
var opText = [...]string{
	opEq:         " == ",
	opNe:         " != ",
	opIn:         " in ",
	opNotIn:      " not in ",
	opContains:   " contains ",
	opStartsWith: " starts with ",
	opEndsWith:   " ends with ",
	opAnd:        " && ",
	opOr:         " || ",
}

func writeOperand(b *strings.Builder, x *node, parens bool) {
	if parens {
		b.WriteString("(")
	}
	x.write(b)
	if parens {
		b.WriteString(")")
	}
}

func writeQuoted(b *strings.Builder, s string) {
	q := "\""
	if strings.Contains(s, q) {
		q = "'"
	}
	b.WriteString(q)
	b.WriteString(s)
	b.WriteString(q)
}
