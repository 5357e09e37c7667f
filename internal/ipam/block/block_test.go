package block

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/tabbynet/tabby/internal/ipam/scenario"
)

// TestScenarios runs testdata/*.txt. Commands:
//
//	new cidr=P [affinity=N]                 start a new block
//	assign n=K handle=H [now=S] [cooldown=S] [attr=(k:v,…)]
//	assign-addr ip=A handle=H               allocate one address by name
//	release ips=(A,…) [now=S]               release addresses
//	release-handle handle=H [now=S]         release a handle's addresses
//	show [now=S] [cooldown=S]               print the block
//	roundtrip                               JSON encode, decode, Validate
//	candidates pool=P size=N [start=I|node=N] [n=K]
//	nth pool=P size=N idx=I
//
// Times are Unix seconds.
func TestScenarios(t *testing.T) {
	scenario.Run(t, "testdata/*.txt", func(t *testing.T) func(*testing.T, *scenario.Command) string {
		var b *Block
		return func(t *testing.T, c *scenario.Command) string {
			now := time.Unix(int64(c.Int(t, "now", 0)), 0)
			cooldown := time.Duration(c.Int(t, "cooldown", 0)) * time.Second
			switch c.Name {
			case "new":
				var err error
				b, err = New(netip.MustParsePrefix(c.String("cidr", "")), c.String("affinity", ""))
				if err != nil {
					return "error: " + err.Error()
				}
				return fmt.Sprintf("%s size=%d", b.CIDR, b.Size())
			case "assign":
				got := b.Assign(c.Int(t, "n", 1), attrOf(c), now, cooldown)
				if err := b.Validate(); err != nil {
					t.Fatalf("%s: %v", c.Pos, err)
				}
				if len(got) == 0 {
					return "none"
				}
				return joinAddrs(got)
			case "assign-addr":
				err := b.AssignAddr(netip.MustParseAddr(c.String("ip", "")), attrOf(c))
				if err != nil {
					return "error: " + err.Error()
				}
				return "ok"
			case "release":
				var addrs []netip.Addr
				for _, s := range c.Values("ips") {
					addrs = append(addrs, netip.MustParseAddr(s))
				}
				got, err := b.Release(addrs, now)
				if err != nil {
					return "error: " + err.Error()
				}
				return printByHandle(got)
			case "release-handle":
				got := b.ReleaseHandle(c.String("handle", ""), now)
				if len(got) == 0 {
					return "none"
				}
				return joinAddrs(got)
			case "show":
				if err := b.Validate(); err != nil {
					t.Fatalf("%s: %v", c.Pos, err)
				}
				return show(b, now, cooldown)
			case "roundtrip":
				data, err := json.Marshal(b)
				if err != nil {
					t.Fatal(err)
				}
				var back Block
				if err := json.Unmarshal(data, &back); err != nil {
					t.Fatal(err)
				}
				if err := back.Validate(); err != nil {
					return "error: " + err.Error()
				}
				if d := cmp.Diff(b, &back, cmpopts.EquateComparable(netip.Prefix{}), cmpopts.EquateEmpty()); d != "" {
					t.Fatalf("%s: round trip differs:\n%s", c.Pos, d)
				}
				return fmt.Sprintf("ok (%d bytes)", len(data))
			case "candidates":
				pool := netip.MustParsePrefix(c.String("pool", ""))
				size := c.Int(t, "size", 0)
				start := uint64(c.Int(t, "start", 0))
				if node := c.String("node", ""); node != "" {
					start = Start(node, Count(pool, size))
				}
				limit := c.Int(t, "n", 1<<30)
				var out []string
				for p := range Candidates(pool, size, start) {
					if len(out) == limit {
						break
					}
					out = append(out, p.String())
				}
				return fmt.Sprintf("count=%d start=%d\n%s", Count(pool, size), start, strings.Join(out, "\n"))
			case "nth":
				pool := netip.MustParsePrefix(c.String("pool", ""))
				return Nth(pool, c.Int(t, "size", 0), uint64(c.Int(t, "idx", 0))).String()
			}
			t.Fatalf("%s: unknown command %q", c.Pos, c.Name)
			return ""
		}
	})
}

func attrOf(c *scenario.Command) Attribute {
	a := Attribute{Handle: c.String("handle", "")}
	for _, kv := range c.Values("attr") {
		k, v, _ := strings.Cut(kv, ":")
		if a.Secondary == nil {
			a.Secondary = map[string]string{}
		}
		a.Secondary[k] = v
	}
	return a
}

func joinAddrs(addrs []netip.Addr) string {
	s := make([]string, len(addrs))
	for i, a := range addrs {
		s[i] = a.String()
	}
	return strings.Join(s, " ")
}

func printByHandle(m map[string][]netip.Addr) string {
	if len(m) == 0 {
		return "none"
	}
	var lines []string
	for h, addrs := range m {
		lines = append(lines, h+": "+joinAddrs(addrs))
	}
	slices.Sort(lines)
	return strings.Join(lines, "\n")
}

// show prints the block: a header, the allocations and the reuse queue,
// with the release time of released addresses and a "*" on addresses
// still in their cooldown.
func show(b *Block, now time.Time, cooldown time.Duration) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s affinity=%q in-use=%d/%d available=%d attributes=%d\n",
		b.CIDR, b.Affinity, b.InUse(), b.Size(), b.Available(now, cooldown), len(b.Attributes))
	for _, a := range b.Allocated() {
		fmt.Fprintf(&sb, "  %s %s", a.Addr, a.Attribute.Handle)
		for _, k := range slices.Sorted(maps.Keys(a.Attribute.Secondary)) {
			fmt.Fprintf(&sb, " %s=%s", k, a.Attribute.Secondary[k])
		}
		sb.WriteString("\n")
	}
	sb.WriteString("  free:")
	q := b.Unallocated
	for i := 0; i < len(q); i++ {
		f := q[i]
		sb.WriteString(" " + b.addr(f.Ordinal).String())
		if f.ReleasedAt != 0 {
			fmt.Fprintf(&sb, "@%d", f.ReleasedAt)
			if !reusable(f, now, cooldown) {
				sb.WriteString("*")
			}
			continue
		}
		// Print a run of never-used consecutive addresses as a range.
		j := i
		for j+1 < len(q) && q[j+1].ReleasedAt == 0 && q[j+1].Ordinal == q[j].Ordinal+1 {
			j++
		}
		if j > i+1 {
			sb.WriteString("-" + b.addr(q[j].Ordinal).String())
			i = j
		}
	}
	return sb.String()
}

func TestNewRejects(t *testing.T) {
	for _, tc := range []struct {
		cidr string
		want string
	}{
		{"10.0.0.1/24", "not a masked prefix"},
		{"10.0.0.0/19", "13 host bits"},
		{"fd00::/115", "13 host bits"},
	} {
		_, err := New(netip.MustParsePrefix(tc.cidr), "")
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("New(%s) = %v, want an error containing %q", tc.cidr, err, tc.want)
		}
	}
}

func TestValidateFindsCorruption(t *testing.T) {
	b, err := New(netip.MustParsePrefix("10.0.0.0/30"), "n1")
	if err != nil {
		t.Fatal(err)
	}
	b.Assign(2, Attribute{Handle: "h"}, time.Unix(0, 0), 0)
	for name, corrupt := range map[string]func(b *Block){
		"double free":       func(b *Block) { b.Unallocated = append(b.Unallocated, Free{Ordinal: 2}) },
		"allocated & free":  func(b *Block) { b.Unallocated = append(b.Unallocated, Free{Ordinal: 0}) },
		"lost ordinal":      func(b *Block) { b.Unallocated = b.Unallocated[1:] },
		"bad index":         func(b *Block) { b.Allocations[0] = intPtr(7) },
		"unused attribute":  func(b *Block) { b.Attributes = append(b.Attributes, Attribute{Handle: "x"}) },
		"wrong entry count": func(b *Block) { b.Allocations = b.Allocations[:3] },
	} {
		data, _ := json.Marshal(b)
		var c Block
		if err := json.Unmarshal(data, &c); err != nil {
			t.Fatal(err)
		}
		corrupt(&c)
		if err := c.Validate(); err == nil {
			t.Errorf("%s: Validate found nothing", name)
		}
	}
}

func TestCheckSize(t *testing.T) {
	for _, tc := range []struct {
		pool string
		size int
		ok   bool
	}{
		{"10.0.0.0/16", 26, true},
		{"10.0.0.0/16", 15, false},
		{"10.0.0.0/16", 33, false},
		{"10.0.0.0/8", 19, false},
		{"fd00::/48", 122, true},
		{"fd00::/48", 115, false},
	} {
		err := CheckSize(netip.MustParsePrefix(tc.pool), tc.size)
		if (err == nil) != tc.ok {
			t.Errorf("CheckSize(%s, %d) = %v, want ok=%v", tc.pool, tc.size, err, tc.ok)
		}
	}
}
