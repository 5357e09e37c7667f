package policy

import (
	"strings"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// requirement is a label that every entity a selector matches must carry:
// key with one of values. It comes from a top-level conjunct `key == "v"`
// or `key in {"v", …}` of the selector's canonical form, and lets the
// engine look only at the entities (or sets) that can match, instead of
// all of them.
type requirement struct {
	key    string
	values []string
}

// requirements returns the requirements of a selector's canonical text
// (see the printing rules of package selector): the equality and set
// membership conjuncts at the top level of an && (or of a lone
// comparison). A selector with a top-level || has none.
func requirements(canonical string) []requirement {
	parts, ok := splitConjuncts(canonical)
	if !ok {
		return nil
	}
	var out []requirement
	for _, p := range parts {
		if r, ok := parseRequirement(p); ok {
			out = append(out, r)
		}
	}
	return out
}

// splitConjuncts splits s at the " && " that are outside quotes,
// parentheses and braces. ok is false if s has a top-level " || ".
func splitConjuncts(s string) (parts []string, ok bool) {
	depth := 0
	var quote byte
	start := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case quote != 0:
			if c == quote {
				quote = 0
			}
		case c == '"' || c == '\'':
			quote = c
		case c == '(' || c == '{':
			depth++
		case c == ')' || c == '}':
			depth--
		case depth == 0 && strings.HasPrefix(s[i:], " || "):
			return nil, false
		case depth == 0 && strings.HasPrefix(s[i:], " && "):
			parts = append(parts, s[start:i])
			start = i + 4
			i += 3
		}
	}
	return append(parts, s[start:]), true
}

// parseRequirement recognises `key == "v"` and `key in {"a", "b"}`.
func parseRequirement(p string) (requirement, bool) {
	key, rest, ok := strings.Cut(p, " ")
	if !ok || key == "" || strings.ContainsAny(key, "!()\"'{}") {
		return requirement{}, false
	}
	if lit, ok := strings.CutPrefix(rest, "== "); ok {
		v, tail, ok := cutLiteral(lit)
		if !ok || tail != "" {
			return requirement{}, false
		}
		return requirement{key: key, values: []string{v}}, true
	}
	set, ok := strings.CutPrefix(rest, "in {")
	if !ok {
		return requirement{}, false
	}
	r := requirement{key: key, values: []string{}}
	for set != "}" {
		v, tail, ok := cutLiteral(set)
		if !ok {
			return requirement{}, false
		}
		r.values = append(r.values, v)
		if t, ok := strings.CutPrefix(tail, ", "); ok {
			set = t
		} else {
			set = tail
			if set != "}" {
				return requirement{}, false
			}
		}
	}
	return r, true
}

// cutLiteral cuts a quoted string literal (no escapes) off the front of s.
func cutLiteral(s string) (value, tail string, ok bool) {
	if s == "" || (s[0] != '"' && s[0] != '\'') {
		return "", "", false
	}
	end := strings.IndexByte(s[1:], s[0])
	if end < 0 {
		return "", "", false
	}
	return s[1 : 1+end], s[2+end:], true
}

// implicitKey reports whether entities carry key implicitly rather than in
// their own labels (so the label postings do not hold it).
func implicitKey(key string) bool {
	return key == v1.LabelNamespace || key == v1.LabelOrchestrator
}
