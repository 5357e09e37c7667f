package policy

import (
	"flag"
	"fmt"
	"os"
	"strings"
	"testing"
)

// A tiny reader for scenario files in the style of etcd-raft's datadriven
// tests. A file is a sequence of cases:
//
//	# comments and blank lines between cases are ignored
//	command arg key=value key=(a,b)
//	input lines (optional)
//	----
//	expected output, up to the first blank line
//
// Output that contains blank lines is written between two "----" lines
// after the separator:
//
//	----
//	----
//	output
//
//	more output
//	----
//	----
//
// go test -run TestScenarios -rewrite rewrites the expected outputs with
// what the test produced. Never rewrite the Kubernetes truth tables in
// testdata/k8s: they are the upstream e2e expectations, written out by
// hand.

var rewrite = flag.Bool("rewrite", false, "rewrite the expected output of scenario files")

// ddCase is one case of a scenario file.
type ddCase struct {
	Pos      string // file:line of the command
	Cmd      string
	Args     []ddArg
	Input    string
	Expected string
}

// ddArg is one argument: a bare word (no Vals) or key=value(s).
type ddArg struct {
	Key  string
	Vals []string
}

// Arg returns the first value of the argument key.
func (d *ddCase) Arg(key string) (string, bool) {
	for _, a := range d.Args {
		if a.Key == key {
			if len(a.Vals) == 0 {
				return "", true
			}
			return a.Vals[0], true
		}
	}
	return "", false
}

// Fatalf fails the test naming the case's position.
func (d *ddCase) Fatalf(t testing.TB, format string, args ...any) {
	t.Helper()
	t.Fatalf("%s: %s: %s", d.Pos, d.Cmd, fmt.Sprintf(format, args...))
}

// runDataDriven runs every case of the file through f and compares (or
// rewrites) the expected output.
func runDataDriven(t *testing.T, path string, f func(t *testing.T, d *ddCase) string) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(data), "\n")
	if n := len(lines); n > 0 && lines[n-1] == "" {
		lines = lines[:n-1]
	}
	var out strings.Builder
	i := 0
	for i < len(lines) {
		line := lines[i]
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			out.WriteString(line + "\n")
			i++
			continue
		}
		d := &ddCase{Pos: fmt.Sprintf("%s:%d", path, i+1)}
		d.Cmd, d.Args = parseDirective(line)
		out.WriteString(line + "\n")
		i++
		var input []string
		for i < len(lines) && lines[i] != "----" {
			input = append(input, lines[i])
			out.WriteString(lines[i] + "\n")
			i++
		}
		if i == len(lines) {
			t.Fatalf("%s: missing ---- after the input", d.Pos)
		}
		i++ // ----
		d.Input = strings.Join(input, "\n")
		var expected []string
		if i < len(lines) && lines[i] == "----" {
			i++
			for i+1 < len(lines) && (lines[i] != "----" || lines[i+1] != "----") {
				expected = append(expected, lines[i])
				i++
			}
			if i+1 >= len(lines) {
				t.Fatalf("%s: missing closing ----/---- of the output", d.Pos)
			}
			i += 2
		} else {
			for i < len(lines) && strings.TrimSpace(lines[i]) != "" {
				expected = append(expected, lines[i])
				i++
			}
		}
		d.Expected = strings.Join(expected, "\n")
		actual := strings.TrimRight(f(t, d), "\n")
		if t.Failed() {
			return
		}
		if *rewrite {
			out.WriteString("----\n")
			if strings.Contains(actual, "\n\n") {
				out.WriteString("----\n" + actual + "\n----\n----\n")
			} else if actual != "" {
				out.WriteString(actual + "\n")
			}
		} else if actual != d.Expected {
			t.Errorf("%s: %s: output differs\n--- got:\n%s\n--- want:\n%s", d.Pos, line, actual, d.Expected)
		}
	}
	if *rewrite {
		if err := os.WriteFile(path, []byte(out.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// parseDirective splits "cmd a k=v k=(x,y)" into the command and args.
func parseDirective(line string) (string, []ddArg) {
	fields := strings.Fields(line)
	cmd := fields[0]
	var args []ddArg
	for _, f := range fields[1:] {
		key, val, ok := strings.Cut(f, "=")
		if !ok {
			args = append(args, ddArg{Key: f})
			continue
		}
		if strings.HasPrefix(val, "(") && strings.HasSuffix(val, ")") {
			args = append(args, ddArg{Key: key, Vals: strings.Split(val[1:len(val)-1], ",")})
		} else {
			args = append(args, ddArg{Key: key, Vals: []string{val}})
		}
	}
	return cmd, args
}
