package bench

import (
	"math"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func readSample(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// The samples were recorded with iperf 3.12 (Debian) between two
// namespaces joined by a veth pair.
func TestParseIperf(t *testing.T) {
	tcp, err := parseIperf(readSample(t, "iperf3-tcp.json"))
	if err != nil {
		t.Fatal(err)
	}
	want := iperfResult{Protocol: "TCP", Streams: 2, BitsPerSecond: 21911572119.212772, Retransmits: 17577}
	if diff := cmp.Diff(want, tcp); diff != "" {
		t.Errorf("TCP sample (-want +got):\n%s", diff)
	}

	udp, err := parseIperf(readSample(t, "iperf3-udp.json"))
	if err != nil {
		t.Fatal(err)
	}
	// sum_received: 242990 datagrams sent, 2626 lost, in 1.000489 s.
	if udp.Protocol != "UDP" || udp.Streams != 1 {
		t.Errorf("UDP sample: protocol %q, %d streams", udp.Protocol, udp.Streams)
	}
	if wantPPS := (242990.0 - 2626) / 1.000489; math.Abs(udp.PacketsPerSecond-wantPPS) > 1e-6 {
		t.Errorf("UDP pps = %v, want %v", udp.PacketsPerSecond, wantPPS)
	}
	if math.Abs(udp.LossPercent-1.0807029095847567) > 1e-9 || udp.BitsPerSecond != 123006217.95941785 {
		t.Errorf("UDP loss %v%%, %v bit/s", udp.LossPercent, udp.BitsPerSecond)
	}

	if _, err := parseIperf(readSample(t, "iperf3-error.json")); err == nil || !strings.Contains(err.Error(), "unable to connect to server: Connection refused") {
		t.Errorf("error sample: err = %v, want iperf3's error", err)
	}
	for _, bad := range []string{"", "{", `{"end": {}}`, `{"start": {"test_start": {"protocol": "SCTP"}}, "end": {"sum_received": {"seconds": 1}}}`} {
		if _, err := parseIperf([]byte(bad)); err == nil {
			t.Errorf("parseIperf(%q) succeeded", bad)
		}
	}
}

func TestIperfArgs(t *testing.T) {
	srv := netip.MustParseAddr("10.0.0.2")
	for _, tc := range []struct {
		test iperfTest
		want string
	}{
		{iperfTest{Server: srv, Seconds: 4, Omit: 1}, "-c 10.0.0.2 -p 5201 -J --connect-timeout 3000 -t 4 -O 1"},
		{iperfTest{Server: srv, Seconds: 1, Streams: 4}, "-c 10.0.0.2 -p 5201 -J --connect-timeout 3000 -t 1 -P 4"},
		{iperfTest{Server: srv, Seconds: 1, UDP: true, Length: 64}, "-c 10.0.0.2 -p 5201 -J --connect-timeout 3000 -t 1 -u -b 0 -l 64"},
		{iperfTest{Server: srv, Bytes: 1 << 20}, "-c 10.0.0.2 -p 5201 -J --connect-timeout 3000 -n 1048576"},
	} {
		if got := strings.Join(tc.test.args(), " "); got != tc.want {
			t.Errorf("args(%+v) = %q, want %q", tc.test, got, tc.want)
		}
	}
}
