package lab

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestComputeGap(t *testing.T) {
	t0 := time.Unix(1000, 0)
	at := func(ms int) time.Time { return t0.Add(time.Duration(ms) * time.Millisecond) }
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	// Probes every 10ms from 0 to 190ms; the move runs from 50 to 150.
	var sent []time.Time
	for i := range 20 {
		sent = append(sent, at(10*i))
	}
	start, end := at(50), at(150)
	timeout := ms(100)
	rtts := func(answered func(i int) time.Duration) []time.Duration {
		out := make([]time.Duration, len(sent))
		for i := range out {
			out[i] = answered(i)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		rtt  []time.Duration
		want FamilyGap
	}{
		{
			name: "no loss: the gap is the interval",
			rtt:  rtts(func(int) time.Duration { return ms(1) }),
			want: FamilyGap{Sent: 20, Answered: 20, Gap: ms(10), Baseline: true, Restored: true},
		},
		{
			name: "probes 6 to 12 lost",
			rtt: rtts(func(i int) time.Duration {
				if i >= 6 && i <= 12 {
					return 0
				}
				return ms(1)
			}),
			want: FamilyGap{Sent: 20, Answered: 13, Gap: ms(80), Baseline: true, Restored: true},
		},
		{
			name: "late answers count as lost",
			rtt: rtts(func(i int) time.Duration {
				if i == 8 {
					return ms(500)
				}
				return ms(1)
			}),
			want: FamilyGap{Sent: 20, Answered: 19, Gap: ms(20), Baseline: true, Restored: true},
		},
		{
			name: "never restored: the gap runs to the last probe",
			rtt: rtts(func(i int) time.Duration {
				if i < 7 {
					return ms(1)
				}
				return 0
			}),
			want: FamilyGap{Sent: 20, Answered: 7, Gap: ms(130), Baseline: true},
		},
		{
			name: "no baseline: not measured",
			rtt: rtts(func(i int) time.Duration {
				if i < 16 {
					return 0
				}
				return ms(1)
			}),
			want: FamilyGap{Sent: 20, Answered: 4, Restored: true},
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := computeGap(FamilyGap{}, sent, tc.rtt, start, end, timeout)
			if diff := cmp.Diff(tc.want, got, cmp.Comparer(func(x, y netip.Addr) bool { return x == y })); diff != "" {
				t.Errorf("computeGap (-want +got):\n%s", diff)
			}
		})
	}
}

func moveTestState() *State {
	return &State{
		Name:  "mvunit",
		Nodes: []Node{{Name: "n1"}, {Name: "n2"}, {Name: "n3"}},
		Workloads: []Workload{
			{Namespace: "default", Name: "a", Node: "n1", ContainerID: "a", Endpoint: "n1-cni-a-eth0", IPv4: netip.MustParseAddr("10.65.0.1")},
			{Namespace: "default", Name: "b", Node: "n2", ContainerID: "b", Endpoint: "n2-cni-b-eth0", IPv4: netip.MustParseAddr("10.65.0.2")},
			{Namespace: "default", Name: "c", Node: "n1", ContainerID: "c", Endpoint: "n1-cni-c-eth0", IPv4: netip.MustParseAddr("10.65.0.3")},
			{Namespace: "default", Name: "a-mv2", Node: "n3", ContainerID: "a-mv2", Endpoint: "n3-cni-a--mv2-eth0", IPv4: netip.MustParseAddr("10.65.0.4")},
		},
	}
}

func TestMoveArgs(t *testing.T) {
	st := moveTestState()
	for _, tc := range []struct {
		cfg       MoveConfig
		wantErr   string
		wantProbe string // the candidate probers, in order
	}{
		{cfg: MoveConfig{Workload: "zz", Node: "n2"}, wantErr: `no workload "zz"`},
		{cfg: MoveConfig{Workload: "a", Node: "n9"}, wantErr: `--node "n9": lab mvunit has no such node (it has n1, n2, n3)`},
		{cfg: MoveConfig{Workload: "a", Node: "n1"}, wantErr: "is on n1 already"},
		{cfg: MoveConfig{Workload: "a", Node: "n2", ProbeFrom: "q"}, wantErr: `--probe-from "q"`},
		{cfg: MoveConfig{Workload: "a", Node: "n2", ProbeFrom: "default/a"}, wantErr: "cannot probe itself"},
		// Neither the old nor the new node first, then the old node.
		{cfg: MoveConfig{Workload: "a", Node: "n2"}, wantProbe: "default/a-mv2 default/c default/b"},
		{cfg: MoveConfig{Workload: "a", Node: "n3"}, wantProbe: "default/b default/c default/a-mv2"},
		{cfg: MoveConfig{Workload: "b", Node: "n3"}, wantProbe: "default/a default/c default/a-mv2"},
		{cfg: MoveConfig{Workload: "a", Node: "n2", ProbeFrom: "b"}, wantProbe: "default/b"},
	} {
		w, p, err := moveArgs(st, tc.cfg)
		switch {
		case tc.wantErr != "":
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("moveArgs(%+v) = %v, want an error with %q", tc.cfg, err, tc.wantErr)
			}
		case err != nil:
			t.Errorf("moveArgs(%+v): %v", tc.cfg, err)
		case w.ID() != "default/"+tc.cfg.Workload || ids(p) != tc.wantProbe:
			t.Errorf("moveArgs(%+v) = %v, %v; want the prober %s", tc.cfg, w, p, tc.wantProbe)
		}
	}
	alone := &State{Name: "mvunit", Nodes: st.Nodes, Workloads: st.Workloads[:1]}
	if _, p, err := moveArgs(alone, MoveConfig{Workload: "a", Node: "n2"}); err != nil || len(p) != 0 {
		t.Errorf("a lone workload: prober %v, %v; want none", p, err)
	}
}

func ids(ws []*Workload) string {
	var out []string
	for _, w := range ws {
		out = append(out, w.ID())
	}
	return strings.Join(out, " ")
}

func TestNextContainerID(t *testing.T) {
	st := moveTestState()
	for _, tc := range []struct{ cid, want string }{
		{"a", "a-mv1"},
		{"a-mv1", "a-mv3"}, // a-mv2 is another workload's
		{"a-mv3", "a-mv4"},
		{"prod-x", "prod-x-mv1"},
		{"x-mv0", "x-mv0-mv1"},
	} {
		if got := nextContainerID(st, Workload{ContainerID: tc.cid}); got != tc.want {
			t.Errorf("nextContainerID(%q) = %q, want %q", tc.cid, got, tc.want)
		}
	}
}

func TestMoveConfigValidate(t *testing.T) {
	c := MoveConfig{Interval: time.Microsecond, ProbeTimeout: 20 * time.Second}
	c.Defaults()
	err := c.Validate()
	for _, want := range []string{"workload", "node", "probe interval", "probe timeout"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("Validate = %v, want an error naming %s", err, want)
		}
	}
}
