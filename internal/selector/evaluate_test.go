package selector

import (
	"sync"
	"testing"
)

func TestEvaluate(t *testing.T) {
	web := Map{"role": "web", "env": "prod", "tier": "frontend", "app.kubernetes.io/name": "shop"}
	empty := Map{}
	tests := []struct {
		sel    string
		labels Map
		want   bool
	}{
		// Empty selector and all().
		{"", empty, true},
		{"   \t\n ", web, true},
		{"all()", empty, true},
		{"all()", web, true},
		{"all ( )", web, true},
		{"!all()", web, false},

		// ==
		{`role == "web"`, web, true},
		{`role == "db"`, web, false},
		{`role == "web"`, empty, false},
		{`role == ""`, Map{"role": ""}, true},
		{`role == ""`, empty, false},
		{`role=='web'`, web, true},
		{`app.kubernetes.io/name == "shop"`, web, true},

		// != is true when the label is absent.
		{`role != "web"`, web, false},
		{`role != "db"`, web, true},
		{`role != "web"`, empty, true},
		{`role != ""`, Map{"role": ""}, false},

		// in / not in
		{`env in {"prod", "staging"}`, web, true},
		{`env in {"dev", "staging"}`, web, false},
		{`env in {"prod"}`, empty, false},
		{`env in {}`, web, false},
		{`env in {}`, empty, false},
		{`env not in {"prod", "staging"}`, web, false},
		{`env not in {"dev"}`, web, true},
		{`env not in {"prod"}`, empty, true},
		{`env not in {}`, web, true},
		{`env not in {}`, empty, true},
		{`env in {"prod","prod",'prod'}`, web, true},
		{`env in {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "prod"}`, web, true},
		{`env in {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j", "k"}`, web, false},
		{`env	not   in{"dev"}`, web, true},

		// has
		{`has(role)`, web, true},
		{`has(role)`, empty, false},
		{`has(role)`, Map{"role": ""}, true},
		{`!has(role)`, empty, true},
		{`has ( app.kubernetes.io/name )`, web, true},

		// contains / starts with / ends with, false when absent.
		{`tier contains "ront"`, web, true},
		{`tier contains "back"`, web, false},
		{`tier contains ""`, web, true},
		{`tier contains ""`, empty, false},
		{`tier starts with "front"`, web, true},
		{`tier starts with "end"`, web, false},
		{`tier starts with "x"`, empty, false},
		{`tier ends with "end"`, web, true},
		{`tier ends with "front"`, web, false},
		{`tier ends with ""`, empty, false},
		{"tier starts\n\twith 'fr'", web, true},

		// global() is true without the namespace label.
		{`global()`, empty, true},
		{`global()`, web, true},
		{`global()`, Map{NamespaceLabel: "default"}, false},
		{`global()`, Map{NamespaceLabel: ""}, false},
		{`!global()`, Map{NamespaceLabel: "default"}, true},
		{`global() || ` + NamespaceLabel + ` == "kube-system"`, Map{NamespaceLabel: "kube-system"}, true},

		// Quotes: either kind, the other kind inside.
		{`q == 'say "hi"'`, Map{"q": `say "hi"`}, true},
		{`q == "it's"`, Map{"q": "it's"}, true},
		{`q == "a && b || (c)"`, Map{"q": "a && b || (c)"}, true},
		{`q in {'"', "'"}`, Map{"q": `'`}, true},

		// Keywords are ordinary keys where a key is expected.
		{`has == "x"`, Map{"has": "x"}, true},
		{`in in {"x"}`, Map{"in": "x"}, true},
		{`not not in {"x"}`, Map{"not": "y"}, true},
		{`all == "x" && global != "y"`, Map{"all": "x"}, true},
		{`has(has)`, Map{"has": ""}, true},

		// ! binds tighter than &&, which binds tighter than ||.
		{`!role == "web"`, web, false},
		{`!role == "db"`, web, true},
		{`!!has(role)`, web, true},
		{`role == "db" && env == "prod" || tier == "frontend"`, web, true},
		{`role == "db" && (env == "prod" || tier == "frontend")`, web, false},
		{`tier == "frontend" || role == "db" && env == "prod"`, web, true},
		{`(tier == "frontend" || role == "db") && env == "dev"`, web, false},
		{`!has(role) || has(env)`, web, true},
		{`!(has(role) || has(env))`, web, false},
		{`!has(role) && has(env)`, web, false},
		{`!(has(role) && has(x))`, web, true},

		// Nesting.
		{`((((role == "web"))))`, web, true},
		{`(role == "web" && (env in {"prod"} && (has(tier) && !has(x))))`, web, true},
		{`a == "1" || (b == "2" || (c == "3" || d == "4"))`, Map{"d": "4"}, true},
		{`a == "1" || (b == "2" || (c == "3" || d == "4"))`, Map{"d": "5"}, false},
		{`(a == "1" || b == "2") && (c == "3" || d == "4")`, Map{"b": "2", "c": "3"}, true},
		{`(a == "1" || b == "2") && (c == "3" || d == "4")`, Map{"b": "2"}, false},
	}
	for _, tt := range tests {
		sel, err := Parse(tt.sel)
		if err != nil {
			t.Errorf("Parse(%q): %v", tt.sel, err)
			continue
		}
		if got := sel.Evaluate(tt.labels); got != tt.want {
			t.Errorf("Parse(%q).Evaluate(%v) = %v, want %v", tt.sel, tt.labels, got, tt.want)
		}
		// The canonical form must behave the same.
		again, err := Parse(sel.String())
		if err != nil {
			t.Errorf("Parse(%q) (canonical of %q): %v", sel.String(), tt.sel, err)
			continue
		}
		if got := again.Evaluate(tt.labels); got != tt.want {
			t.Errorf("Parse(%q).Evaluate(%v) = %v, want %v (canonical of %q)", sel.String(), tt.labels, got, tt.want, tt.sel)
		}
	}
}

func TestEvaluateNilLabels(t *testing.T) {
	for sel, want := range map[string]bool{
		`all()`:            true,
		`global()`:         true,
		`has(a)`:           false,
		`a != "x"`:         true,
		`a not in {"x"}`:   true,
		`a == "x"`:         false,
		`a contains ""`:    false,
		`!has(a) && b!=""`: true,
	} {
		if got := MustParse(sel).Evaluate(nil); got != want {
			t.Errorf("Parse(%q).Evaluate(nil) = %v, want %v", sel, got, want)
		}
		if got := MustParse(sel).Evaluate(Map(nil)); got != want {
			t.Errorf("Parse(%q).Evaluate(Map(nil)) = %v, want %v", sel, got, want)
		}
	}
}

// TestEvaluateConcurrent shares one Selector among goroutines; run with -race.
func TestEvaluateConcurrent(t *testing.T) {
	sel := MustParse(`role == "web" && env in {"prod", "staging"} && has(tier)`)
	labels := Map{"role": "web", "env": "staging", "tier": "x"}
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 1000 {
				if !sel.Evaluate(labels) {
					t.Error("Evaluate = false, want true")
					return
				}
			}
		})
	}
	wg.Wait()
}

func TestEvaluateDoesNotAllocate(t *testing.T) {
	labels := Map{"role": "web", "env": "prod", "tier": "frontend", NamespaceLabel: "default"}
	for _, s := range []string{
		`role == "web" && env in {"prod", "staging"} && has(tier)`,
		`role != "db" || env not in {"a", "b", "c", "d", "e", "f", "g", "h", "i", "j"}`,
		`tier contains "ron" && tier starts with "f" && tier ends with "end"`,
		`!(global() || all()) || !has(x)`,
		``,
	} {
		sel := MustParse(s)
		var l Labels = labels
		if n := testing.AllocsPerRun(100, func() { sel.Evaluate(l) }); n != 0 {
			t.Errorf("Parse(%q).Evaluate allocates %v times per run, want 0", s, n)
		}
		if n := testing.AllocsPerRun(100, func() { sel.Evaluate(labels) }); n != 0 {
			t.Errorf("Parse(%q).Evaluate(Map) allocates %v times per run, want 0", s, n)
		}
	}
}
