package v1

import (
	"encoding/json"
	"testing"
	"time"
)

func TestProtocolJSON(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want Protocol
		out  string
	}{
		{`"TCP"`, ProtocolTCP, `"TCP"`},
		{`"tcp"`, ProtocolTCP, `"TCP"`},
		{`6`, ProtocolTCP, `"TCP"`},
		{`"17"`, ProtocolUDP, `"UDP"`},
		{`58`, ProtocolICMPv6, `"ICMPv6"`},
		{`"icmpv6"`, ProtocolICMPv6, `"ICMPv6"`},
		{`132`, ProtocolSCTP, `"SCTP"`},
		{`136`, ProtocolUDPLite, `"UDPLite"`},
		{`47`, Protocol("47"), `47`},
		{`"47"`, Protocol("47"), `47`},
		{`300`, Protocol("300"), `300`},
		{`"GRE"`, Protocol("GRE"), `"GRE"`},
		{`"007"`, Protocol("7"), `7`},
	} {
		var p Protocol
		if err := json.Unmarshal([]byte(tc.in), &p); err != nil {
			t.Errorf("Unmarshal(%s): %v", tc.in, err)
			continue
		}
		if p != tc.want {
			t.Errorf("Unmarshal(%s) = %q, want %q", tc.in, p, tc.want)
		}
		out, err := json.Marshal(p)
		if err != nil || string(out) != tc.out {
			t.Errorf("Marshal(%q) = %s, %v; want %s", p, out, err, tc.out)
		}
	}
	for _, bad := range []string{`true`, `{}`, `-1`, `1.5`} {
		var p Protocol
		if err := json.Unmarshal([]byte(bad), &p); err == nil {
			t.Errorf("Unmarshal(%s) = %q, want an error", bad, p)
		}
	}
}

func TestProtocolNumber(t *testing.T) {
	for p, want := range map[Protocol]int{ProtocolTCP: 6, "tcp": 6, "47": 47, "255": 255, "0": -1, "256": -1, "GRE": -1} {
		n, ok := p.Number()
		if got := map[bool]int{true: int(n), false: -1}[ok]; got != want {
			t.Errorf("Protocol(%q).Number() = %d, %v; want %d", p, n, ok, want)
		}
	}
	if !ProtocolSCTP.SupportsPorts() || ProtocolICMP.SupportsPorts() || !Protocol("17").SupportsPorts() {
		t.Errorf("SupportsPorts is wrong")
	}
}

func TestPortJSONAndRange(t *testing.T) {
	for _, tc := range []struct {
		in     string
		want   Port
		out    string
		lo, hi uint16
		name   string
	}{
		{`80`, "80", `80`, 80, 80, ""},
		{`"80"`, "80", `80`, 80, 80, ""},
		{`"8000:8080"`, "8000:8080", `"8000:8080"`, 8000, 8080, ""},
		{`"http"`, "http", `"http"`, 0, 0, "http"},
	} {
		var p Port
		if err := json.Unmarshal([]byte(tc.in), &p); err != nil || p != tc.want {
			t.Errorf("Unmarshal(%s) = %q, %v; want %q", tc.in, p, err, tc.want)
			continue
		}
		out, _ := json.Marshal(p)
		if string(out) != tc.out {
			t.Errorf("Marshal(%q) = %s, want %s", p, out, tc.out)
		}
		lo, hi, ok := p.Range()
		if ok != (tc.name == "") || lo != tc.lo || hi != tc.hi || p.Name() != tc.name {
			t.Errorf("%q: Range() = %d, %d, %v, Name() = %q", p, lo, hi, ok, p.Name())
		}
	}
	if PortRange(5, 5) != "5" || PortRange(1, 9) != "1:9" || PortNumber(22) != "22" || NamedPort("ssh") != "ssh" {
		t.Errorf("constructors are wrong")
	}
	for _, bad := range []string{`-1`, `1.5`, `null`, `[]`} {
		var p Port
		if err := json.Unmarshal([]byte(bad), &p); err == nil && bad != `null` {
			t.Errorf("Unmarshal(%s) = %q, want an error", bad, p)
		}
	}
}

func TestASNumber(t *testing.T) {
	for in, want := range map[string]ASNumber{`64512`: 64512, `"64512"`: 64512, `"1.10"`: 65546, `4294967295`: 4294967295, `"65535.65535"`: 4294967295} {
		var a ASNumber
		if err := json.Unmarshal([]byte(in), &a); err != nil || a != want {
			t.Errorf("Unmarshal(%s) = %d, %v; want %d", in, a, err, want)
		}
	}
	for _, bad := range []string{`0`, `4294967296`, `"0.0"`, `"1.65536"`, `"x"`, `-5`} {
		var a ASNumber
		if err := json.Unmarshal([]byte(bad), &a); err == nil {
			t.Errorf("Unmarshal(%s) = %d, want an error", bad, a)
		}
	}
}

func TestDurationJSON(t *testing.T) {
	var d Duration
	if err := json.Unmarshal([]byte(`"1m30s"`), &d); err != nil || d.Duration != 90*time.Second {
		t.Fatalf("Unmarshal = %v, %v", d, err)
	}
	if out, _ := json.Marshal(d); string(out) != `"1m30s"` {
		t.Errorf("Marshal = %s", out)
	}
	for _, bad := range []string{`90`, `"ninety"`} {
		if err := json.Unmarshal([]byte(bad), &d); err == nil {
			t.Errorf("Unmarshal(%s) succeeded", bad)
		}
	}
}
