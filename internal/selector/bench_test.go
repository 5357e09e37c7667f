package selector

import "testing"

var benchLabels = Map{
	"role":                   "web",
	"env":                    "staging",
	"tier":                   "frontend",
	"app.kubernetes.io/name": "shop",
	"version":                "v1.2.3",
	"team":                   "payments",
	"zone":                   "eu-west-1a",
	NamespaceLabel:           "default",
}

func BenchmarkSelectorMatch(b *testing.B) {
	sel := MustParse(`role == "web" && env in {"prod", "staging"} && has(tier)`)
	var l Labels = benchLabels
	b.ReportAllocs()
	for b.Loop() {
		if !sel.Evaluate(l) {
			b.Fatal("no match")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	const s = `role == "web" && env in {"prod", "staging"} && (has(tier) || !app.kubernetes.io/name starts with "legacy-")`
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(s); err != nil {
			b.Fatal(err)
		}
	}
}
