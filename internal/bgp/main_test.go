package bgp_test

// The tests run each node's speaker as a child process inside the node's
// network namespace: GoBGP opens its sockets from goroutines it owns, so
// they cannot be pinned to a namespace from inside one process. The child
// is this test binary again, with envSpeaker naming its config file;
// TestMain then runs speakerMain instead of the tests.

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"

	"github.com/tabbynet/tabby/internal/bgp"
	"github.com/tabbynet/tabby/internal/dataplane/nl"
	"github.com/tabbynet/tabby/internal/dataplane/routes"
)

const envSpeaker = "TABBY_BGP_TEST_SPEAKER"

func TestMain(m *testing.M) {
	if path := os.Getenv(envSpeaker); path != "" {
		os.Exit(speakerMain(path))
	}
	os.Exit(m.Run())
}

// childConfig configures a child speaker.
type childConfig struct {
	NodeName        string
	ASNumber        uint32
	IPv4, IPv6      netip.Addr
	GracefulRestart bool
	RestartTime     time.Duration
	DeferralTime    time.Duration
	Peers           []bgp.Peer
	Advertised      []bgp.Advertisement
	// Static are the routes besides the learned ones that the node's
	// routes manager holds: the blocks' blackholes and the workloads'
	// routes, as the agent will add them.
	Static []routes.Route
}

// command is a request to a child, one JSON line on its stdin; it answers
// with one reply line on its stdout. Op is "apply" (set the non-nil
// Peers and Advertised, then Apply), "status" or "learned".
type command struct {
	Op         string
	Peers      []bgp.Peer          `json:",omitempty"`
	Advertised []bgp.Advertisement `json:",omitempty"`
}

type reply struct {
	Err     string           `json:",omitempty"`
	Status  []bgp.PeerStatus `json:",omitempty"`
	Learned *bgp.Learned     `json:",omitempty"`
}

// speakerMain runs a speaker and its installer in the current network
// namespace until SIGTERM or the end of stdin, then stops it (gracefully
// if so configured).
func speakerMain(path string) int {
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if err := runSpeaker(path, log); err != nil {
		log.Error("speaker failed", "err", err)
		return 1
	}
	return 0
}

func runSpeaker(path string, log *slog.Logger) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var cc childConfig
	if err := json.Unmarshal(b, &cc); err != nil {
		return err
	}
	ctx, cancel := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer cancel()

	sp, err := bgp.Start(ctx, bgp.Config{
		NodeName:    cc.NodeName,
		ASNumber:    cc.ASNumber,
		IPv4Address: cc.IPv4,
		IPv6Address: cc.IPv6,
		GracefulRestart: bgp.GracefulRestart{
			Enabled:      cc.GracefulRestart,
			RestartTime:  cc.RestartTime,
			DeferralTime: cc.DeferralTime,
		},
	}, log)
	if err != nil {
		return err
	}
	defer func() {
		if err := sp.Stop(context.Background()); err != nil {
			log.Error("stopping", "err", err)
		}
	}()
	sp.SetPeers(cc.Peers)
	sp.SetAdvertised(cc.Advertised)
	if err := sp.Apply(ctx); err != nil {
		return err
	}

	h, err := nl.Open("/proc/self/ns/net")
	if err != nil {
		return err
	}
	defer h.Close()
	mgr, err := routes.New(routes.Config{}, h, log)
	if err != nil {
		return err
	}
	table := &mergedTable{m: mgr, static: cc.Static}
	inst := &bgp.Installer{Speaker: sp, Table: table, Log: log, Resync: 5 * time.Second, RetryDelay: 100 * time.Millisecond}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = inst.Run(ctx)
	}()
	defer func() { cancel(); <-done }()

	lines := make(chan []byte)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(os.Stdin)
		sc.Buffer(make([]byte, 1<<20), 64<<20)
		for sc.Scan() {
			lines <- append([]byte(nil), sc.Bytes()...)
		}
	}()
	enc := json.NewEncoder(os.Stdout)
	for {
		select {
		case <-ctx.Done():
			return nil
		case line, ok := <-lines:
			if !ok {
				return nil
			}
			var c command
			var r reply
			if err := json.Unmarshal(line, &c); err != nil {
				r.Err = err.Error()
			} else if err := handle(ctx, sp, c, &r); err != nil {
				r.Err = err.Error()
			}
			if err := enc.Encode(r); err != nil {
				return err
			}
		}
	}
}

func handle(ctx context.Context, sp *bgp.Speaker, c command, r *reply) error {
	switch c.Op {
	case "apply":
		if c.Peers != nil {
			sp.SetPeers(c.Peers)
		}
		if c.Advertised != nil {
			sp.SetAdvertised(c.Advertised)
		}
		return sp.Apply(ctx)
	case "status":
		st, err := sp.Status(ctx)
		r.Status = st
		return err
	case "learned":
		l, err := sp.Learned(ctx)
		r.Learned = &l
		return err
	}
	return fmt.Errorf("unknown op %q", c.Op)
}

// mergedTable adds the node's static routes to the learned ones, as the
// agent does, before handing them to the one routes manager.
type mergedTable struct {
	m      *routes.Manager
	static []routes.Route
}

func (t *mergedTable) Set(learned []routes.Route) {
	t.m.Set(append(append([]routes.Route(nil), t.static...), learned...))
}

func (t *mergedTable) Apply(ctx context.Context) (routes.Result, error) { return t.m.Apply(ctx) }
