package agent

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/datastore/etcd"
	"github.com/tabbynet/tabby/internal/datastore/etcd/etcdtest"
	"github.com/tabbynet/tabby/internal/netns"
)

// buildTabby builds the tabby binary from the module root into a
// temporary directory and returns its path.
func buildTabby(t *testing.T) string {
	t.Helper()
	out, err := exec.Command("go", "env", "GOMOD").Output()
	if err != nil {
		t.Fatalf("go env GOMOD: %v", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		t.Fatal("go env GOMOD: not inside a module")
	}
	bin := filepath.Join(t.TempDir(), "tabby")
	build := exec.Command("go", "build", "-o", bin, "./cmd/tabby")
	build.Dir = filepath.Dir(gomod)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// agentProc is one `tabby agent` process started by the test.
type agentProc struct {
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed when cmd.Wait returned
}

// syncBuffer collects a process's output for the test log.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startAgentProc starts `tabby agent` in its own process group. It stays in
// the root namespace (to reach etcd on loopback) and programs hostNS.
// t.Cleanup kills it by PID if it is still running and logs its output.
func startAgentProc(t *testing.T, bin string, endpoints []string, hostNS, socket string) *agentProc {
	t.Helper()
	cmd := exec.Command(bin, "agent", "--node", "node-1", "--endpoints", strings.Join(endpoints, ","),
		"--netns", hostNS, "--no-bgp", "--health-addr", "", "--status-socket", socket)
	// Never read the user's config file.
	cmd.Env = append(os.Environ(), "TABBY_CONFIG="+filepath.Join(t.TempDir(), "config.yaml"),
		"TABBY_ETCD_ENDPOINTS=", "TABBY_CONTEXT=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	p := &agentProc{cmd: cmd, out: &syncBuffer{}, done: make(chan struct{})}
	cmd.Stdout, cmd.Stderr = p.out, p.out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting agent: %v", err)
	}
	go func() { _ = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() || testing.Verbose() {
			t.Logf("agent pid %d output:\n%s", cmd.Process.Pid, p.out.String())
		}
	})
	return p
}

// kill sends SIGKILL to the process by its PID (if it still runs) and
// waits until it is reaped.
func (p *agentProc) kill(t *testing.T) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	if err := syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL); err != nil && !errors.Is(err, syscall.ESRCH) {
		t.Errorf("killing agent pid %d: %v", p.cmd.Process.Pid, err)
	}
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		t.Errorf("agent pid %d did not exit after SIGKILL", p.cmd.Process.Pid)
	}
}

var nftHandle = regexp.MustCompile(`# handle (\d+)`)

// nftHandles returns every line of `nft -a list table inet tabby` in ns
// that carries a handle, so that identical sets mean nothing was recreated.
func nftHandles(t *testing.T, ns *netns.NS) []string {
	t.Helper()
	out, err := exec.Command("ip", "netns", "exec", filepath.Base(ns.Path()), "nft", "-a", "list", "table", "inet", "tabby").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list table inet tabby: %v\n%s", err, out)
	}
	var lines []string
	for _, l := range strings.Split(string(out), "\n") {
		if nftHandle.MatchString(l) {
			lines = append(lines, strings.TrimSpace(l))
		}
	}
	if len(lines) == 0 {
		t.Fatalf("table inet tabby has no handles:\n%s", out)
	}
	slices.Sort(lines)
	return lines
}

// stream is a TCP connection from one workload to an echo server in
// another: a writer sends a small chunk every 10ms and a reader counts
// the echoed bytes and the longest gap between them.
type stream struct {
	conn     net.Conn
	stopSend chan struct{}
	sendDone chan struct{}
	recvDone chan struct{}

	mu       sync.Mutex
	sent     int64
	received int64
	lastRecv time.Time
	maxGap   time.Duration
	errs     []error
}

func (s *stream) fail(err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.errs = append(s.errs, err)
}

func startStream(t *testing.T, from, to *netns.NS, addr string) *stream {
	t.Helper()
	var ln net.Listener
	if err := to.Do(func() (err error) {
		ln, err = net.Listen("tcp", net.JoinHostPort(addr, "0"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	srvDone := make(chan struct{})
	go func() {
		defer close(srvDone)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		defer c.Close()
		_, _ = io.Copy(c, c) // echo until the client closes
	}()

	var conn net.Conn
	if err := from.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", ln.Addr().String(), 5*time.Second)
		return err
	}); err != nil {
		t.Fatalf("connecting to %s: %v", ln.Addr(), err)
	}
	s := &stream{conn: conn, stopSend: make(chan struct{}), sendDone: make(chan struct{}),
		recvDone: make(chan struct{}), lastRecv: time.Now()}
	t.Cleanup(func() {
		conn.Close()
		<-s.recvDone
		ln.Close()
		<-srvDone
	})

	go func() {
		defer close(s.sendDone)
		chunk := bytes.Repeat([]byte("tabby!"), 16)
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-s.stopSend:
				return
			case <-tick.C:
			}
			_ = conn.SetWriteDeadline(time.Now().Add(10 * time.Second))
			n, err := conn.Write(chunk)
			s.mu.Lock()
			s.sent += int64(n)
			s.mu.Unlock()
			if err != nil {
				s.fail(err)
				return
			}
		}
	}()
	go func() {
		defer close(s.recvDone)
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			now := time.Now()
			s.mu.Lock()
			if n > 0 {
				s.received += int64(n)
				s.maxGap = max(s.maxGap, now.Sub(s.lastRecv))
				s.lastRecv = now
			}
			s.mu.Unlock()
			if err != nil {
				if !errors.Is(err, net.ErrClosed) {
					s.fail(err)
				}
				return
			}
		}
	}()
	return s
}

// finish stops the writer, waits until every sent byte came back and
// returns the totals and the longest gap between received chunks.
func (s *stream) finish(t *testing.T) (sent, received int64, maxGap time.Duration, errs []error) {
	t.Helper()
	close(s.stopSend)
	<-s.sendDone
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		sent, received = s.sent, s.received
		s.mu.Unlock()
		if received >= sent || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.sent, s.received, s.maxGap, slices.Clone(s.errs)
}

// TestAgentSIGKILLRestart checks that a TCP stream between two workloads
// of a host keeps flowing while the agent process is killed with SIGKILL
// and started again: no reset, no lost bytes, a bounded stall, and the
// restarted agent reconciles the nftables table without recreating any of
// its objects.
func TestAgentSIGKILLRestart(t *testing.T) {
	h := newTestHost(t)
	bin := buildTabby(t)
	_, cc := etcdtest.StartTestServer(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	store, err := etcd.New(ctx, cc, etcdtest.Logger())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { store.Close() })
	h.client = datastore.NewClient(store)

	// A real host has an address of its own; the kernel uses it as the
	// sender of the ARP requests for its workloads.
	hn := filepath.Base(h.host.Path())
	h.ip("-n", hn, "link", "set", "lo", "up")
	h.ip("-n", hn, "addr", "add", "10.69.255.1/32", "dev", "lo")
	wa, ifa := h.addWorkload("a", "10.69.0.1", "fd00:69::1")
	wb, ifb := h.addWorkload("b", "10.69.0.2", "fd00:69::2")
	h.apply(openProfile + "---\n" + wep("a", ifa, "10.69.0.1", "fd00:69::1", "app: a") + "---\n" + wep("b", ifb, "10.69.0.2", "fd00:69::2", "app: b"))

	socket := filepath.Join(t.TempDir(), "agent.sock")
	h.status = NewStatusClient(socket)
	first := startAgentProc(t, bin, cc.Endpoints, h.host.Path(), socket)
	h.waitProgrammed("a")
	h.waitProgrammed("b")

	s := startStream(t, wa, wb, "10.69.0.2")
	time.Sleep(time.Second)
	before := nftHandles(t, h.host)

	first.kill(t)
	killed := time.Now()
	time.Sleep(time.Second)
	// The killed agent left its socket file behind; the new one replaces it.
	second := startAgentProc(t, bin, cc.Endpoints, h.host.Path(), socket)
	h.waitProgrammed("a")
	h.waitProgrammed("b")
	t.Logf("agent killed, restarted and programmed again after %v", time.Since(killed).Round(time.Millisecond))
	time.Sleep(2 * time.Second)

	sent, received, maxGap, errs := s.finish(t)
	t.Logf("streamed %d bytes, %d echoed back, longest gap between received chunks %v", sent, received, maxGap)
	for _, err := range errs {
		t.Errorf("stream error: %v", err)
	}
	if sent == 0 || received != sent {
		t.Errorf("sent %d bytes, received %d", sent, received)
	}
	if maxGap > time.Second {
		t.Errorf("stream stalled for %v (bound 1s)", maxGap)
	}
	if diff := cmp.Diff(before, nftHandles(t, h.host)); diff != "" {
		t.Errorf("nftables objects were recreated by the restarted agent (-before +after):\n%s", diff)
	}
	select {
	case <-second.done:
		t.Errorf("restarted agent exited early:\n%s", second.out.String())
	default:
	}
}
