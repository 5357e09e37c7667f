// Package scenario runs scenario files for IPAM tests, in the style of
// etcd-io/raft's datadriven tests: a file is a sequence of commands, each
// followed by the output it must produce.
//
//	# A comment.
//	assign node=n1 handle=h1 v4=2
//	optional input lines
//	----
//	10.65.0.0
//	10.65.0.1
//
// A command line is a word followed by arguments key=value, key=(a,b,c)
// or a bare key. Input lines, if any, run up to the "----" line. The
// expected output runs up to the next blank line, so outputs have no
// blank lines. Run the tests with -rewrite to write the actual outputs
// back into the files (review the diff before committing it).
package scenario

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

var rewrite = flag.Bool("rewrite", false, "rewrite scenario files with the actual outputs")

// Arg is one argument of a command.
type Arg struct {
	Key    string
	Values []string // empty for a bare key
}

// Command is one command of a scenario file.
type Command struct {
	Pos      string // file:line, for error messages
	Name     string
	Args     []Arg
	Input    string
	Expected string

	prefix string // the comments and blank lines before the command
}

// Has reports whether the command has the argument key.
func (c *Command) Has(key string) bool {
	for _, a := range c.Args {
		if a.Key == key {
			return true
		}
	}
	return false
}

// Values returns the values of argument key, or nil.
func (c *Command) Values(key string) []string {
	for _, a := range c.Args {
		if a.Key == key {
			return a.Values
		}
	}
	return nil
}

// String returns the single value of argument key, or def if it is
// absent.
func (c *Command) String(key, def string) string {
	v := c.Values(key)
	if len(v) == 0 {
		return def
	}
	return v[0]
}

// Int returns argument key as an integer, or def if it is absent.
func (c *Command) Int(t testing.TB, key string, def int) int {
	t.Helper()
	s := c.String(key, "")
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil {
		t.Fatalf("%s: %s=%q: %v", c.Pos, key, s, err)
	}
	return n
}

// Run runs every file matching pattern (for example "testdata/*.txt") as
// a subtest named after the file. For each file, setup is called once to
// get the handler of that file's commands, so every file starts from a
// fresh state. The handler returns the command's output.
func Run(t *testing.T, pattern string, setup func(t *testing.T) func(t *testing.T, c *Command) string) {
	t.Helper()
	files, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatalf("no scenario files match %s", pattern)
	}
	for _, file := range files {
		t.Run(strings.TrimSuffix(filepath.Base(file), filepath.Ext(file)), func(t *testing.T) {
			runFile(t, file, setup(t))
		})
	}
}

func runFile(t *testing.T, file string, handle func(t *testing.T, c *Command) string) {
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := Parse(file, string(data))
	if err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	for _, c := range cmds {
		got := strings.TrimRight(handle(t, c), "\n")
		if strings.Contains(got, "\n\n") {
			t.Fatalf("%s: output has a blank line:\n%s", c.Pos, got)
		}
		if *rewrite {
			out.WriteString(c.source())
			out.WriteString(got)
			if got != "" {
				out.WriteString("\n")
			}
			out.WriteString("\n")
			continue
		}
		if got != c.Expected {
			t.Errorf("%s: %s\ngot:\n%s\nwant:\n%s", c.Pos, c.line(), got, c.Expected)
		}
	}
	if *rewrite {
		if err := os.WriteFile(file, []byte(strings.TrimRight(out.String(), "\n")+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// Parse splits a scenario file into commands.
func Parse(file, text string) ([]*Command, error) {
	lines := strings.Split(text, "\n")
	var cmds []*Command
	var pending []string // comments and blank lines before the next command
	for i := 0; i < len(lines); i++ {
		line := lines[i]
		trimmed := strings.TrimSpace(line)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			pending = append(pending, line)
			continue
		}
		c := &Command{Pos: fmt.Sprintf("%s:%d", file, i+1)}
		if err := c.parseLine(trimmed); err != nil {
			return nil, fmt.Errorf("%s: %w", c.Pos, err)
		}
		var input []string
		for i++; i < len(lines) && lines[i] != "----"; i++ {
			input = append(input, lines[i])
		}
		if i >= len(lines) {
			return nil, fmt.Errorf("%s: no ---- after the command", c.Pos)
		}
		c.Input = strings.Join(input, "\n")
		var expected []string
		for i++; i < len(lines) && lines[i] != ""; i++ {
			expected = append(expected, lines[i])
		}
		c.Expected = strings.Join(expected, "\n")
		c.prefix = strings.Join(pending, "\n")
		pending = nil
		cmds = append(cmds, c)
	}
	return cmds, nil
}

func (c *Command) parseLine(line string) error {
	fields := strings.Fields(line)
	c.Name = fields[0]
	for _, f := range fields[1:] {
		key, val, ok := strings.Cut(f, "=")
		if key == "" {
			return fmt.Errorf("argument %q has no key", f)
		}
		a := Arg{Key: key}
		switch {
		case !ok:
		case strings.HasPrefix(val, "(") && strings.HasSuffix(val, ")"):
			inner := val[1 : len(val)-1]
			if inner != "" {
				a.Values = strings.Split(inner, ",")
			}
		default:
			a.Values = []string{val}
		}
		c.Args = append(c.Args, a)
	}
	return nil
}

// line prints the command line back.
func (c *Command) line() string {
	parts := []string{c.Name}
	for _, a := range c.Args {
		switch {
		case a.Values == nil:
			parts = append(parts, a.Key)
		case len(a.Values) == 1 && !strings.Contains(a.Values[0], ","):
			parts = append(parts, a.Key+"="+a.Values[0])
		default:
			parts = append(parts, a.Key+"=("+strings.Join(a.Values, ",")+")")
		}
	}
	return strings.Join(parts, " ")
}

// source prints the command back as in the file, up to and including its
// "----" line.
func (c *Command) source() string {
	var b strings.Builder
	if c.prefix != "" {
		b.WriteString(c.prefix + "\n")
	}
	b.WriteString(c.line() + "\n")
	if c.Input != "" {
		b.WriteString(c.Input + "\n")
	}
	b.WriteString("----\n")
	return b.String()
}
