// Package bench runs Tabby's system benchmark suites (`tabby bench`):
// each suite builds the labs it needs (internal/lab), measures, and takes
// them down again, and reports medians with min/max over several runs.
//
// A suite registers itself with [register] from an init function in its
// own file. Suites measure; they never assert timing goals: a Result
// carries its goal, and whether it was met is computed from the numbers
// and printed, never turned into a failure.
package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"runtime"
	"slices"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// Options are the settings every suite gets.
type Options struct {
	// Quick runs the suite small: a smoke test of the whole path, for CI.
	Quick bool
	// Binary is the tabby binary the labs run. Default: this executable.
	Binary string
	// Runs is how many times each measurement is repeated (a suite may
	// use fewer in Quick mode). Default 3 (1 with Quick).
	Runs int
	// Progress receives one line per step ("setup: 500 workloads on 1
	// node, run 2/3"). Default: discarded.
	Progress io.Writer
	// Log receives debug messages. Default: discarded.
	Log *slog.Logger
	// LabPrefix starts the names of the labs a suite creates (so that
	// concurrent benches and tests never collide). Default "bench".
	LabPrefix string
}

func (o *Options) defaults() {
	if o.Binary == "" {
		o.Binary, _ = os.Executable()
	}
	if o.Runs <= 0 {
		o.Runs = 3
		if o.Quick {
			o.Runs = 1
		}
	}
	if o.Progress == nil {
		o.Progress = io.Discard
	}
	if o.Log == nil {
		o.Log = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	if o.LabPrefix == "" {
		o.LabPrefix = "bench"
	}
}

// Progressf writes one progress line.
func (o *Options) Progressf(format string, args ...any) {
	fmt.Fprintf(o.Progress, format+"\n", args...)
}

// Result is one measured quantity: the value of each run, summarised as
// median, min and max.
type Result struct {
	// Name says what was measured, e.g. "1 node: workloads/s".
	Name string `json:"name"`
	// Unit of the values: "ms", "/s", "Gbit/s", "MB", "ratio", …
	Unit   string    `json:"unit"`
	Values []float64 `json:"values"`
	Median float64   `json:"median"`
	Min    float64   `json:"min"`
	Max    float64   `json:"max"`
	// Goal is the goal in words ("≥ 200/s"), empty if there is none;
	// Met says whether the median meets it (nil without a goal).
	Goal string `json:"goal,omitempty"`
	Met  *bool  `json:"met,omitempty"`
	// Note explains anything a reader needs to read the number right.
	Note string `json:"note,omitempty"`
}

// NewResult summarises values. goal is "" or an operator and a number
// in the result's unit ("<= 250", ">= 200"); it is checked against the
// median.
func NewResult(name, unit string, values []float64, goal string) Result {
	r := Result{Name: name, Unit: unit, Values: values}
	if len(values) > 0 {
		r.Median, r.Min, r.Max = Median(values), slices.Min(values), slices.Max(values)
	}
	if goal != "" {
		r.Goal = goal + " " + unit
		if met, ok := checkGoal(goal, r.Median); ok && len(values) > 0 {
			r.Met = &met
		}
	}
	return r
}

func checkGoal(goal string, v float64) (met, ok bool) {
	op, num, found := strings.Cut(goal, " ")
	if !found {
		return false, false
	}
	var g float64
	if _, err := fmt.Sscan(num, &g); err != nil {
		return false, false
	}
	switch op {
	case "<=":
		return v <= g, true
	case "<":
		return v < g, true
	case ">=":
		return v >= g, true
	case ">":
		return v > g, true
	}
	return false, false
}

// Median of values (the mean of the middle two for an even count).
func Median(values []float64) float64 {
	return Percentile(values, 50)
}

// Percentile p (0–100) of values, by linear interpolation between the
// closest ranks; NaN for no values.
func Percentile(values []float64, p float64) float64 {
	if len(values) == 0 {
		return math.NaN()
	}
	s := slices.Clone(values)
	sort.Float64s(s)
	rank := p / 100 * float64(len(s)-1)
	lo := int(math.Floor(rank))
	hi := int(math.Ceil(rank))
	return s[lo] + (s[hi]-s[lo])*(rank-float64(lo))
}

// Millis converts durations to milliseconds.
func Millis(ds []time.Duration) []float64 {
	out := make([]float64, len(ds))
	for i, d := range ds {
		out[i] = float64(d) / float64(time.Millisecond)
	}
	return out
}

// Report is what one suite run produced.
type Report struct {
	Suite    string         `json:"suite"`
	Quick    bool           `json:"quick"`
	Runs     int            `json:"runs"`
	Machine  Machine        `json:"machine"`
	Started  time.Time      `json:"started"`
	Seconds  float64        `json:"seconds"`
	Params   map[string]any `json:"params,omitempty"`
	Results  []Result       `json:"results"`
	Notes    []string       `json:"notes,omitempty"`
	Warnings []string       `json:"warnings,omitempty"`
}

// Add appends a result.
func (r *Report) Add(res Result) { r.Results = append(r.Results, res) }

// Machine describes where a report was measured.
type Machine struct {
	CPUs      int    `json:"cpus"`
	CPU       string `json:"cpu,omitempty"`
	MemoryMiB int    `json:"memoryMiB,omitempty"`
	Kernel    string `json:"kernel,omitempty"`
	GoVersion string `json:"goVersion"`
	// Load1 is the one-minute load average when the suite started: a
	// busy machine makes every number worse.
	Load1 float64 `json:"load1"`
}

func thisMachine() Machine {
	m := Machine{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for l := range strings.Lines(string(b)) {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	if b, err := os.ReadFile("/proc/meminfo"); err == nil {
		var kb int
		if _, err := fmt.Sscanf(string(b), "MemTotal: %d kB", &kb); err == nil {
			m.MemoryMiB = kb / 1024
		}
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscan(string(b), &m.Load1)
	}
	return m
}

// suiteFunc runs a suite and fills the report. It must take down every
// lab it created, also when it fails or ctx ends.
type suiteFunc func(ctx context.Context, o *Options, r *Report) error

type suite struct {
	name, summary string
	run           suiteFunc
}

var suites []suite

// register adds a suite; called from the init function of the suite's
// file.
func register(name, summary string, run suiteFunc) {
	suites = append(suites, suite{name, summary, run})
	slices.SortFunc(suites, func(a, b suite) int { return strings.Compare(a.name, b.name) })
}

// Suites lists the suites by name with a one-line summary each.
func Suites() [][2]string {
	out := make([][2]string, len(suites))
	for i, s := range suites {
		out[i] = [2]string{s.name, s.summary}
	}
	return out
}

// ErrUnknownSuite is returned by Run for a suite that does not exist.
var ErrUnknownSuite = errors.New("unknown suite")

// CheckSuite reports whether a suite called name exists (ErrUnknownSuite,
// with the names there are, if not).
func CheckSuite(name string) error {
	if slices.ContainsFunc(suites, func(s suite) bool { return s.name == name }) {
		return nil
	}
	var names []string
	for _, s := range suites {
		names = append(names, s.name)
	}
	return fmt.Errorf("%w %q: want one of %s", ErrUnknownSuite, name, strings.Join(names, ", "))
}

// Run runs the suite name.
func Run(ctx context.Context, name string, o Options) (*Report, error) {
	if err := CheckSuite(name); err != nil {
		return nil, err
	}
	i := slices.IndexFunc(suites, func(s suite) bool { return s.name == name })
	o.defaults()
	r := &Report{Suite: name, Quick: o.Quick, Runs: o.Runs, Machine: thisMachine(), Started: time.Now(), Params: map[string]any{}}
	err := suites[i].run(ctx, &o, r)
	r.Seconds = time.Since(r.Started).Seconds()
	return r, err
}

// WriteTable prints the report as a table.
func (r *Report) WriteTable(w io.Writer) error {
	fmt.Fprintf(w, "suite %s: %d run(s)%s, %.0f s, %d CPUs (%s), load %.2f at start\n",
		r.Suite, r.Runs, map[bool]string{true: ", quick"}[r.Quick], r.Seconds, r.Machine.CPUs, r.Machine.CPU, r.Machine.Load1)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "RESULT\tMEDIAN\tMIN\tMAX\tUNIT\tGOAL\t")
	for _, res := range r.Results {
		goal := res.Goal
		if res.Met != nil {
			goal += map[bool]string{true: " (met)", false: " (NOT MET)"}[*res.Met]
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", res.Name, num(res.Median), num(res.Min), num(res.Max), res.Unit, goal)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, n := range r.Notes {
		fmt.Fprintln(w, "note:", n)
	}
	for _, n := range r.Warnings {
		fmt.Fprintln(w, "warning:", n)
	}
	return nil
}

// num formats v with about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case math.IsNaN(v):
		return "-"
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	case a >= 1:
		return fmt.Sprintf("%.2f", v)
	default:
		return fmt.Sprintf("%.3g", v)
	}
}

// WriteJSON writes the reports as a JSON array to path.
func WriteJSON(path string, reports []*Report) error {
	b, err := json.MarshalIndent(reports, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}
