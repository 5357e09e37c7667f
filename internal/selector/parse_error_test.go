package selector

import (
	"errors"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestParseErrors(t *testing.T) {
	long := strings.Repeat("x", 64)
	deep := strings.Repeat("!", maxDepth) + "has(a)"
	tooDeep := strings.Repeat("(", maxDepth) + "!has(a)" + strings.Repeat(")", maxDepth)
	tests := []struct {
		in   string
		pos  int
		msg  string
		okay bool // the input is valid; checks the depth limit's boundary
	}{
		{in: `a == 'x' &&`, pos: 11, msg: `expected an expression, found end of input`},
		{in: `a == "x" ||`, pos: 11, msg: `expected an expression, found end of input`},
		{in: `&& a == "x"`, pos: 0, msg: `expected an expression, found "&&"`},
		{in: `a == "x" b == "y"`, pos: 9, msg: `expected "&&", "||" or end of input, found "b"`},
		{in: `a == "x" "y"`, pos: 9, msg: `expected "&&", "||" or end of input, found string literal`},
		{in: `a == "x")`, pos: 8, msg: `expected "&&", "||" or end of input, found ")"`},
		{in: `(a == "x"`, pos: 9, msg: `expected "&&", "||" or ")", found end of input`},
		{in: `(a == "x"}`, pos: 9, msg: `expected "&&", "||" or ")", found "}"`},
		{in: `()`, pos: 1, msg: `expected an expression, found ")"`},
		{in: `!`, pos: 1, msg: `expected an expression, found end of input`},
		{in: `a`, pos: 1, msg: `expected an operator (==, !=, in, not in, contains, starts with, ends with), found end of input`},
		{in: `a = "x"`, pos: 2, msg: `unexpected character "=" (did you mean "=="?)`},
		{in: `a == "x" & b == "y"`, pos: 9, msg: `unexpected character "&" (did you mean "&&"?)`},
		{in: `a == "x" | b == "y"`, pos: 9, msg: `unexpected character "|" (did you mean "||"?)`},
		{in: `a == "x" ; b`, pos: 9, msg: `unexpected character ";"`},
		{in: `a == "é" && é`, pos: 13, msg: `unexpected character "é"`},
		{in: "a == \"x\" && \xff", pos: 12, msg: `unexpected character "\xff"`},
		{in: `a == x`, pos: 5, msg: `expected a quoted string, found "x"`},
		{in: `a ==`, pos: 4, msg: `expected a quoted string, found end of input`},
		{in: `a == "x`, pos: 5, msg: `unterminated string literal`},
		{in: `a == 'x"`, pos: 5, msg: `unterminated string literal`},
		{in: `a in {"x", 'y}`, pos: 11, msg: `unterminated string literal`},
		// A syntax error before a lexical error is reported first.
		{in: `a b "unterminated`, pos: 2, msg: `expected an operator (==, !=, in, not in, contains, starts with, ends with), found "b"`},
		{in: `a in "x"`, pos: 5, msg: `expected "{", found string literal`},
		{in: `a in {`, pos: 6, msg: `expected a quoted string or "}", found end of input`},
		{in: `a in {"x"`, pos: 9, msg: `expected "," or "}", found end of input`},
		{in: `a in {"x" "y"}`, pos: 10, msg: `expected "," or "}", found string literal`},
		{in: `a in {"x",}`, pos: 10, msg: `expected a quoted string, found "}"`},
		{in: `a in {x}`, pos: 6, msg: `expected a quoted string or "}", found "x"`},
		{in: `a not {"x"}`, pos: 6, msg: `expected "in", found "{"`},
		{in: `a not contains "x"`, pos: 6, msg: `expected "in", found "contains"`},
		{in: `a starts "x"`, pos: 9, msg: `expected "with", found string literal`},
		{in: `a ends on "x"`, pos: 7, msg: `expected "with", found "on"`},
		{in: `a like "x"`, pos: 2, msg: `expected an operator (==, !=, in, not in, contains, starts with, ends with), found "like"`},
		{in: `has()`, pos: 4, msg: `expected a label key, found ")"`},
		{in: `has("a")`, pos: 4, msg: `expected a label key, found string literal`},
		{in: `has(a`, pos: 5, msg: `expected ")", found end of input`},
		{in: `has(a b)`, pos: 6, msg: `expected ")", found "b"`},
		{in: `all(x)`, pos: 4, msg: `expected ")", found "x"`},
		{in: `global(`, pos: 7, msg: `expected ")", found end of input`},
		{in: `foo(a)`, pos: 3, msg: `expected an operator (==, !=, in, not in, contains, starts with, ends with), found "("`},
		{in: `has(a) == "x"`, pos: 7, msg: `expected "&&", "||" or end of input, found "=="`},

		// Bad label keys are reported at the start of the key.
		{in: `x == "1" && a/b/c == "x"`, pos: 12, msg: `invalid label key "a/b/c": a label key contains at most one '/'`},
		{in: `/a == "x"`, pos: 0, msg: `invalid label key "/a": the prefix before '/' is empty`},
		{in: `a/ == "x"`, pos: 0, msg: `invalid label key "a/": the name part is empty`},
		{in: `has(-a)`, pos: 4, msg: `invalid label key "-a": the name part must start and end with a letter or digit`},
		{in: `a. == "x"`, pos: 0, msg: `invalid label key "a.": the name part must start and end with a letter or digit`},
		{in: `_a in {}`, pos: 0, msg: `invalid label key "_a": the name part must start and end with a letter or digit`},
		{in: long + ` == "x"`, pos: 0, msg: `invalid label key "` + long + `": the name part is longer than 63 characters`},
		{in: `Example.com/a == "x"`, pos: 0, msg: `invalid label key "Example.com/a": the prefix before '/' must be a lowercase DNS subdomain such as example.com`},
		{in: `example..com/a == "x"`, pos: 0, msg: `invalid label key "example..com/a": the prefix before '/' must be a lowercase DNS subdomain such as example.com`},
		{in: `-example.com/a == "x"`, pos: 0, msg: `invalid label key "-example.com/a": the prefix before '/' must be a lowercase DNS subdomain such as example.com`},
		{in: `ex_ample.com/a == "x"`, pos: 0, msg: `invalid label key "ex_ample.com/a": the prefix before '/' must be a lowercase DNS subdomain such as example.com`},
		{in: strings.Repeat("a", 254) + `/a == "x"`, pos: 0, msg: `invalid label key "` + strings.Repeat("a", 254) + `/a": the prefix before '/' is longer than 253 characters`},

		// Nesting limit.
		{in: deep, okay: true},
		{in: "!" + deep, pos: maxDepth, msg: `expression nested too deeply (more than 200 levels of "(" and "!")`},
		{in: tooDeep, pos: maxDepth, msg: `expression nested too deeply (more than 200 levels of "(" and "!")`},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.in)
		if tt.okay {
			if err != nil {
				t.Errorf("Parse(%q): %v", tt.in, err)
			}
			continue
		}
		if err == nil {
			t.Errorf("Parse(%q) = %q, want error", tt.in, sel)
			continue
		}
		var perr *ParseError
		if !errors.As(err, &perr) {
			t.Errorf("Parse(%q) error %T, want *ParseError", tt.in, err)
			continue
		}
		want := &ParseError{Pos: tt.pos, Msg: tt.msg, Input: tt.in}
		if diff := cmp.Diff(want, perr); diff != "" {
			t.Errorf("Parse(%q) error mismatch (-want +got):\n%s", tt.in, diff)
		}
	}
}

func TestParseErrorString(t *testing.T) {
	_, err := Parse(`a == 'x' &&`)
	want := `selector "a == 'x' &&": position 11: expected an expression, found end of input`
	if err == nil || err.Error() != want {
		t.Errorf("Parse error = %v, want %s", err, want)
	}
}

func TestValidKeys(t *testing.T) {
	for _, k := range []string{
		"a", "A", "0", "a-b_c.d", "app.kubernetes.io/name", NamespaceLabel,
		"projectcalico.org/orchestrator", "a/b", "1.2-3/Z", strings.Repeat("x", 63),
		strings.Repeat("a", 253) + "/b",
	} {
		if _, err := Parse("has(" + k + ")"); err != nil {
			t.Errorf("Parse(has(%s)): %v", k, err)
		}
	}
}

func TestMustParsePanics(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Error("MustParse of an invalid selector did not panic")
		}
	}()
	MustParse("a ==")
}
