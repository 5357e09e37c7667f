package lab

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// self is this executable.
func self() string {
	p, _ := os.Executable()
	return p
}

// ErrUsage marks probe errors that are the caller's mistake (an unknown
// workload, a bad port), as opposed to packets that did not get through.
var ErrUsage = errors.New("bad probe")

const probePayload = "tabby-lab-probe\n"

// echo connects from inside the namespace at nsPath to addr and checks
// that what it sends comes back. proto is tcp or udp.
func echo(ctx context.Context, nsPath, proto, addr string, timeout time.Duration) error {
	ns, err := netns.Open(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	deadline := time.Now().Add(timeout)
	var c net.Conn
	// The socket is created (and, for TCP, connected) in the namespace.
	err = ns.Do(func() error {
		d := net.Dialer{Deadline: deadline}
		var err error
		c, err = d.DialContext(ctx, proto, addr)
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	if _, err := c.Write([]byte(probePayload)); err != nil {
		return err
	}
	buf := make([]byte, len(probePayload))
	if _, err := io.ReadFull(c, buf); err != nil {
		return err
	}
	if string(buf) != probePayload {
		return fmt.Errorf("echo mismatch: %q", buf)
	}
	return nil
}

// ProbeSpec is one probe.
type ProbeSpec struct {
	From    string // workload
	To      string // workload or address
	Proto   string // tcp, udp or icmp
	Port    int
	Family  int // 4 or 6
	Timeout time.Duration
}

// Probe reports whether the packets of p get through (nil) or not (an
// error saying what happened).
func Probe(ctx context.Context, st *State, p ProbeSpec) error {
	from, ok := st.Workload(p.From)
	if !ok {
		return fmt.Errorf("%w: no workload %q in lab %s", ErrUsage, p.From, st.Name)
	}
	if p.Family == 0 {
		p.Family = 4
	}
	if p.Timeout == 0 {
		p.Timeout = time.Second
	}
	var dst netip.Addr
	if to, ok := st.Workload(p.To); ok {
		dst = to.Addr(p.Family)
		if !dst.IsValid() {
			return fmt.Errorf("%w: workload %s has no IPv%d address", ErrUsage, to.ID(), p.Family)
		}
	} else if a, err := netip.ParseAddr(p.To); err == nil {
		dst = a
	} else {
		return fmt.Errorf("%w: %q is neither a workload of lab %s nor an address", ErrUsage, p.To, st.Name)
	}
	nsPath := netns.NamedPath(from.NetNS)
	switch p.Proto {
	case "tcp", "udp":
		if p.Port < 1 || p.Port > 65535 {
			return fmt.Errorf("%w: port %d: want 1-65535", ErrUsage, p.Port)
		}
		return echo(ctx, nsPath, p.Proto, net.JoinHostPort(dst.String(), strconv.Itoa(p.Port)), p.Timeout)
	case "icmp":
		secs := int((p.Timeout + time.Second - 1) / time.Second)
		args := []string{"ping", "-n", "-q", "-c1", "-W", strconv.Itoa(secs)}
		if dst.Is6() {
			args = append(args, "-6")
		}
		out, err := netns.Exec(ctx, nsPath, args[0], append(args[1:], dst.String())...)
		if err != nil {
			return fmt.Errorf("%w: %s", err, bytes.TrimSpace(out))
		}
		return nil
	}
	return fmt.Errorf("%w: proto %q: want tcp, udp or icmp", ErrUsage, p.Proto)
}

// Pair is one cell of a matrix.
type Pair struct {
	From, To string
	Allowed  bool
}

// Matrix probes every ordered pair of distinct workloads, at most
// parallel at a time, and returns the results in order.
func Matrix(ctx context.Context, st *State, tmpl ProbeSpec, parallel int) []Pair {
	var out []Pair
	for _, a := range st.Workloads {
		for _, b := range st.Workloads {
			if a.ID() != b.ID() {
				out = append(out, Pair{From: a.ID(), To: b.ID()})
			}
		}
	}
	sem := make(chan struct{}, max(parallel, 1))
	var wg sync.WaitGroup
	for i := range out {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			p := tmpl
			p.From, p.To = out[i].From, out[i].To
			out[i].Allowed = Probe(ctx, st, p) == nil
		})
	}
	wg.Wait()
	return out
}

// Serve runs echo servers ("tcp:PORT", "udp:PORT") on every address of
// the calling process's namespace until ctx ends.
func Serve(ctx context.Context, specs []string, log *slog.Logger) error {
	if err := ParseServe(specs); err != nil {
		return err
	}
	errc := make(chan error, len(specs))
	var closers []io.Closer
	for _, s := range specs {
		proto, port, _ := strings.Cut(s, ":")
		switch proto {
		case "tcp":
			ln, err := net.Listen("tcp", ":"+port)
			if err != nil {
				return err
			}
			closers = append(closers, ln)
			go func() { errc <- serveTCP(ln, log) }()
		case "udp":
			pc, err := net.ListenPacket("udp", ":"+port)
			if err != nil {
				return err
			}
			closers = append(closers, pc)
			go func() { errc <- serveUDP(pc) }()
		}
		log.Info("serving", "proto", proto, "port", port)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	for _, c := range closers {
		c.Close()
	}
	return err
}

func serveTCP(ln net.Listener, log *slog.Logger) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(30 * time.Second))
			n, _ := io.Copy(c, c)
			log.Debug("tcp echo", "remote", c.RemoteAddr(), "bytes", n)
		}()
	}
}

func serveUDP(pc net.PacketConn) error {
	buf := make([]byte, 64<<10)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}
