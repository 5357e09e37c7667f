package v1

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Protocol is an IP protocol in a rule: one of the names TCP, UDP, ICMP,
// ICMPv6, SCTP and UDPLite, or a protocol number 1-255 written in decimal.
// In JSON it is a string or a number. Decoding accepts the names in any
// case and turns numbers that have a name into that name, so "tcp", 6 and
// "6" all decode to ProtocolTCP. Other values decode as written and are
// rejected by Validate.
type Protocol string

// The protocols that have names.
const (
	ProtocolTCP     Protocol = "TCP"
	ProtocolUDP     Protocol = "UDP"
	ProtocolICMP    Protocol = "ICMP"
	ProtocolICMPv6  Protocol = "ICMPv6"
	ProtocolSCTP    Protocol = "SCTP"
	ProtocolUDPLite Protocol = "UDPLite"
)

var protocolNumbers = map[Protocol]uint8{
	ProtocolICMP:    1,
	ProtocolTCP:     6,
	ProtocolUDP:     17,
	ProtocolICMPv6:  58,
	ProtocolSCTP:    132,
	ProtocolUDPLite: 136,
}

// ProtocolNumber returns the Protocol for protocol number n, by name if it
// has one.
func ProtocolNumber(n uint8) Protocol {
	for name, num := range protocolNumbers {
		if num == n {
			return name
		}
	}
	return Protocol(strconv.Itoa(int(n)))
}

// normalize returns the canonical spelling of p: a name for a named
// protocol (in any case, or by number), else p unchanged.
func (p Protocol) normalize() Protocol {
	for name := range protocolNumbers {
		if strings.EqualFold(string(p), string(name)) {
			return name
		}
	}
	if isDigits(string(p)) {
		if n, err := strconv.ParseUint(string(p), 10, 8); err == nil {
			return ProtocolNumber(uint8(n))
		}
	}
	return p
}

// Number returns the protocol number of p and whether p is a valid
// protocol.
func (p Protocol) Number() (uint8, bool) {
	if n, ok := protocolNumbers[p.normalize()]; ok {
		return n, true
	}
	if !isDigits(string(p)) {
		return 0, false
	}
	n, err := strconv.ParseUint(string(p), 10, 8)
	if err != nil || n == 0 {
		return 0, false
	}
	return uint8(n), true
}

// SupportsPorts reports whether rules with protocol p may match ports:
// true for TCP, UDP and SCTP.
func (p Protocol) SupportsPorts() bool {
	switch p.normalize() {
	case ProtocolTCP, ProtocolUDP, ProtocolSCTP:
		return true
	}
	return false
}

// MarshalJSON writes a numeric protocol as a JSON number and a named one
// as a string.
func (p Protocol) MarshalJSON() ([]byte, error) {
	if plainNumber(string(p)) {
		return []byte(p), nil
	}
	return json.Marshal(string(p))
}

// UnmarshalJSON accepts a string or a number.
func (p *Protocol) UnmarshalJSON(data []byte) error {
	s, err := numberOrString(data, "protocol")
	if err != nil {
		return err
	}
	*p = Protocol(s).normalize()
	return nil
}

// Port is a port match in a rule, as in Calico: a port number ("80"), an
// inclusive range "min:max" ("8000:8080"), or the name of a named port of
// the destination endpoint ("http"). In JSON a single port number is a
// number and the other forms are strings; decoding accepts a number
// written as a string too. Validate checks the syntax and ranges.
type Port string

// PortNumber returns the Port matching port n.
func PortNumber(n uint16) Port { return Port(strconv.Itoa(int(n))) }

// PortRange returns the Port matching lo to hi inclusive.
func PortRange(lo, hi uint16) Port {
	if lo == hi {
		return PortNumber(lo)
	}
	return Port(fmt.Sprintf("%d:%d", lo, hi))
}

// NamedPort returns the Port matching the named port name.
func NamedPort(name string) Port { return Port(name) }

// Range returns the inclusive port range of a numeric port or range. ok
// is false for a named port or an invalid value.
func (p Port) Range() (lo, hi uint16, ok bool) {
	s := string(p)
	first, last, isRange := strings.Cut(s, ":")
	l, err1 := parsePortNumber(first)
	if !isRange {
		return l, l, err1 == nil
	}
	h, err2 := parsePortNumber(last)
	if err1 != nil || err2 != nil || l > h {
		return 0, 0, false
	}
	return l, h, true
}

// Name returns the port name of a named port, or "" for a numeric port or
// range.
func (p Port) Name() string {
	if p.isNumeric() {
		return ""
	}
	return string(p)
}

// isNumeric reports whether p is written as a number or a range (valid or
// not) rather than as a name.
func (p Port) isNumeric() bool {
	s := string(p)
	if strings.Contains(s, ":") {
		return true
	}
	_, err := strconv.ParseInt(s, 10, 64)
	return err == nil || isDigits(strings.TrimPrefix(s, "-"))
}

// MarshalJSON writes a single port number as a JSON number and the other
// forms as strings.
func (p Port) MarshalJSON() ([]byte, error) {
	if plainNumber(string(p)) {
		return []byte(p), nil
	}
	return json.Marshal(string(p))
}

// UnmarshalJSON accepts a string or a number.
func (p *Port) UnmarshalJSON(data []byte) error {
	s, err := numberOrString(data, "port")
	if err != nil {
		return err
	}
	*p = Port(s)
	return nil
}

func parsePortNumber(s string) (uint16, error) {
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("port must be between 1 and 65535")
	}
	return uint16(n), nil
}

// ASNumber is a BGP autonomous system number, 1 to 4294967295 (4-byte AS
// numbers). In JSON it is a number; decoding also accepts a string holding
// a number or an "asdot" number such as "1.10" (= 65546). 0 means unset.
type ASNumber uint32

// UnmarshalJSON accepts a number, a decimal string or an asdot string.
func (a *ASNumber) UnmarshalJSON(data []byte) error {
	s, err := numberOrString(data, "AS number")
	if err != nil {
		return err
	}
	n, err := ParseASNumber(s)
	if err != nil {
		return err
	}
	*a = n
	return nil
}

// ParseASNumber parses an AS number in plain ("65546") or asdot ("1.10")
// notation.
func ParseASNumber(s string) (ASNumber, error) {
	const reason = "AS number must be between 1 and 4294967295 (or asdot 0.1 to 65535.65535)"
	if hi, lo, ok := strings.Cut(s, "."); ok {
		h, err1 := strconv.ParseUint(hi, 10, 16)
		l, err2 := strconv.ParseUint(lo, 10, 16)
		if err1 != nil || err2 != nil || h<<16|l == 0 {
			return 0, fmt.Errorf("%s", reason)
		}
		return ASNumber(h<<16 | l), nil
	}
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%s", reason)
	}
	return ASNumber(n), nil
}

// Duration is a time.Duration written in JSON as a Go duration string
// such as "90s" or "1m30s" (the form Kubernetes' metav1.Duration uses).
type Duration struct {
	time.Duration
}

// MarshalJSON writes d as a duration string.
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(d.Duration.String())
}

// UnmarshalJSON reads a duration string.
func (d *Duration) UnmarshalJSON(data []byte) error {
	var s string
	if err := json.Unmarshal(data, &s); err != nil {
		return fmt.Errorf(`must be a duration string such as "90s"`)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf(`invalid duration: want a Go duration such as "90s" or "2m"`)
	}
	d.Duration = v
	return nil
}

// numberOrString returns the text of a JSON number or the value of a JSON
// string; a JSON number must be a non-negative integer.
func numberOrString(data []byte, what string) (string, error) {
	data = bytes.TrimSpace(data)
	if len(data) > 0 && data[0] == '"' {
		var s string
		if err := json.Unmarshal(data, &s); err != nil {
			return "", err
		}
		return s, nil
	}
	var n json.Number
	if err := json.Unmarshal(data, &n); err != nil || n == "" {
		return "", fmt.Errorf("%s must be a number or a string", what)
	}
	if !isDigits(n.String()) {
		return "", fmt.Errorf("%s must be a non-negative integer", what)
	}
	return n.String(), nil
}

// plainNumber reports whether s is a decimal number that JSON can carry
// as a number and give back with the same spelling.
func plainNumber(s string) bool {
	return isDigits(s) && (s == "0" || s[0] != '0') && len(s) <= 15
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}
