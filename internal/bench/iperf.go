package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// iperfPort is the port of every iperf3 server the benchmarks start (one
// per namespace, so they never clash).
const iperfPort = 5201

// iperfResult is what one iperf3 client run measured, as the receiver saw
// it.
type iperfResult struct {
	Protocol string // "TCP" or "UDP"
	Streams  int
	// BitsPerSecond is the received goodput.
	BitsPerSecond float64
	// UDP only: PacketsPerSecond is the datagrams delivered per second
	// (sent minus lost), LossPercent the share lost.
	PacketsPerSecond float64
	LossPercent      float64
	// TCP only: the sender's retransmissions.
	Retransmits int64
}

// iperfSum is one of the "sum_sent" / "sum_received" objects of iperf3's
// JSON output (-J).
type iperfSum struct {
	Seconds       float64 `json:"seconds"`
	Bytes         int64   `json:"bytes"`
	BitsPerSecond float64 `json:"bits_per_second"`
	Retransmits   int64   `json:"retransmits"`
	Packets       int64   `json:"packets"`
	LostPackets   int64   `json:"lost_packets"`
	LostPercent   float64 `json:"lost_percent"`
}

// iperfJSON is the part of iperf3's JSON output the benchmarks read.
type iperfJSON struct {
	Start struct {
		TestStart struct {
			Protocol   string `json:"protocol"`
			NumStreams int    `json:"num_streams"`
		} `json:"test_start"`
	} `json:"start"`
	End struct {
		SumSent     *iperfSum `json:"sum_sent"`
		SumReceived *iperfSum `json:"sum_received"`
	} `json:"end"`
	Error string `json:"error"`
}

// parseIperf reads the JSON output of an iperf3 client (iperf3 -c … -J).
// A run that failed (the "error" field) or that carries no received
// totals is an error.
func parseIperf(b []byte) (iperfResult, error) {
	var j iperfJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return iperfResult{}, fmt.Errorf("reading iperf3 JSON: %w", err)
	}
	if j.Error != "" {
		return iperfResult{}, fmt.Errorf("iperf3: %s", j.Error)
	}
	recv := j.End.SumReceived
	if recv == nil || recv.Seconds <= 0 {
		return iperfResult{}, errors.New("iperf3 JSON has no end.sum_received")
	}
	r := iperfResult{
		Protocol:      j.Start.TestStart.Protocol,
		Streams:       j.Start.TestStart.NumStreams,
		BitsPerSecond: recv.BitsPerSecond,
	}
	switch r.Protocol {
	case "UDP":
		// The receiver counts datagrams by sequence number: "packets"
		// is the number sent as far as it knows, "lost_packets" those
		// that never arrived.
		r.PacketsPerSecond = float64(recv.Packets-recv.LostPackets) / recv.Seconds
		r.LossPercent = recv.LostPercent
	case "TCP":
		if j.End.SumSent != nil {
			r.Retransmits = j.End.SumSent.Retransmits
		}
	default:
		return iperfResult{}, fmt.Errorf("iperf3 JSON: unknown protocol %q", r.Protocol)
	}
	return r, nil
}

// iperfTest is one iperf3 client run.
type iperfTest struct {
	Server  netip.Addr
	Seconds int  // -t
	Omit    int  // -O: seconds at the start not counted (TCP slow start)
	Streams int  // -P; 0 or 1 for one
	UDP     bool // -u -b 0: as many datagrams as it can send
	Length  int  // -l: datagram size (UDP payload bytes)
	Bytes   int  // -n: send this many bytes instead of for Seconds
}

func (t iperfTest) args() []string {
	a := []string{"-c", t.Server.String(), "-p", strconv.Itoa(iperfPort), "-J", "--connect-timeout", "3000"}
	if t.Bytes > 0 {
		a = append(a, "-n", strconv.Itoa(t.Bytes))
	} else {
		a = append(a, "-t", strconv.Itoa(t.Seconds))
	}
	if t.Omit > 0 {
		a = append(a, "-O", strconv.Itoa(t.Omit))
	}
	if t.Streams > 1 {
		a = append(a, "-P", strconv.Itoa(t.Streams))
	}
	if t.UDP {
		a = append(a, "-u", "-b", "0")
	}
	if t.Length > 0 {
		a = append(a, "-l", strconv.Itoa(t.Length))
	}
	return a
}

// runIperf runs an iperf3 client in the namespace at nsPath and returns
// what it measured.
func runIperf(ctx context.Context, nsPath string, t iperfTest) (iperfResult, error) {
	ns, err := netns.Open(nsPath)
	if err != nil {
		return iperfResult{}, err
	}
	defer ns.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Duration(t.Seconds+t.Omit+20)*time.Second)
	defer cancel()
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "iperf3", t.args()...)
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := ns.Start(cmd); err != nil {
		return iperfResult{}, err
	}
	werr := cmd.Wait()
	r, perr := parseIperf(stdout.Bytes())
	if perr != nil || werr != nil {
		return iperfResult{}, fmt.Errorf("iperf3 %s in %s: %w", strings.Join(t.args(), " "), nsPath,
			errors.Join(werr, perr, stderrErr(stderr.String())))
	}
	return r, nil
}

func stderrErr(s string) error {
	if s = strings.TrimSpace(s); s != "" {
		return errors.New(s)
	}
	return nil
}

// iperfServer is an iperf3 server (iperf3 -s) this process started in a
// namespace; it serves one test at a time until stopped.
type iperfServer struct {
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error // of Wait, once done is closed
}

// startIperfServer starts iperf3 -s in the namespace at nsPath, listening
// on addr, logging to logPath, and waits until it listens.
func startIperfServer(ctx context.Context, nsPath string, addr netip.Addr, logPath string) (*iperfServer, error) {
	ns, err := netns.Open(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	cmd := exec.Command("iperf3", "-s", "-B", addr.String(), "-p", strconv.Itoa(iperfPort), "--logfile", logPath, "--forceflush")
	if err := ns.Start(cmd); err != nil {
		return nil, err
	}
	s := &iperfServer{cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		s.err = cmd.Wait()
		close(s.done)
	}()
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for {
		if b, _ := os.ReadFile(logPath); bytes.Contains(b, []byte("Server listening")) {
			return s, nil
		}
		select {
		case <-s.done:
			b, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("iperf3 server in %s exited (%v): %s", nsPath, s.err, bytes.TrimSpace(b))
		case <-ctx.Done():
			return nil, errors.Join(ctx.Err(), s.Stop())
		case <-deadline.C:
			return nil, errors.Join(fmt.Errorf("iperf3 server in %s not listening after 5s", nsPath), s.Stop())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// PID is the server's process ID.
func (s *iperfServer) PID() int { return s.cmd.Process.Pid }

// Stop ends the server (SIGTERM, SIGKILL after 3 s) and waits for it. It
// is idempotent.
func (s *iperfServer) Stop() error {
	select {
	case <-s.done:
		return nil
	default:
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
		return nil
	case <-time.After(3 * time.Second):
	}
	_ = s.cmd.Process.Kill()
	select {
	case <-s.done:
		return nil
	case <-time.After(3 * time.Second):
		return fmt.Errorf("iperf3 server (pid %d) does not exit", s.PID())
	}
}
