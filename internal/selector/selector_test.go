package selector

import "testing"

func TestUsesGlobal(t *testing.T) {
	for s, want := range map[string][2]bool{ // UsesGlobal, IsGlobal
		"global()":                {true, true},
		"global ()":               {true, true},
		"global() || a == 'b'":    {true, false},
		"!(x == 'y' && global())": {true, false},
		`a == "global("`:          {false, false},
		"all()":                   {false, false},
	} {
		sel, err := Parse(s)
		if err != nil {
			t.Fatalf("Parse(%q): %v", s, err)
		}
		if got := [2]bool{sel.UsesGlobal(), sel.IsGlobal()}; got != want {
			t.Errorf("%q: UsesGlobal, IsGlobal = %v, want %v", s, got, want)
		}
	}
}
