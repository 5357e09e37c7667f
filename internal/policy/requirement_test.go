package policy

import (
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/selector"
)

func TestRequirements(t *testing.T) {
	for _, tc := range []struct {
		sel  string
		want []requirement
	}{
		{"all()", nil},
		{"app == 'a'", []requirement{{"app", []string{"a"}}}},
		{"app == 'a' && role in {'y', 'x'}", []requirement{{"app", []string{"a"}}, {"role", []string{"x", "y"}}}},
		{"app == 'a' || role == 'x'", nil},
		{"(app == 'a' || app == 'b') && role == 'x'", []requirement{{"role", []string{"x"}}}},
		{"!app == 'a' && role == 'x'", []requirement{{"role", []string{"x"}}}},
		{"app == 'a && b || c' && role == 'x'", []requirement{{"app", []string{"a && b || c"}}, {"role", []string{"x"}}}},
		{`app == 'say "hi"'`, []requirement{{"app", []string{`say "hi"`}}}},
		{"app in {} && has(x)", []requirement{{"app", []string{}}}},
		{"app not in {'a'} && app != 'b' && app contains 'c'", nil},
		{"a == 'x' && b == 'y' || c == 'z'", nil},
		{"example.com/app == 'a'", []requirement{{"example.com/app", []string{"a"}}}},
	} {
		s := selector.MustParse(tc.sel)
		got := requirements(s.String())
		if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(requirement{})); diff != "" {
			t.Errorf("requirements(%q) (canonical %q) (-want +got):\n%s", tc.sel, s.String(), diff)
		}
	}
}
