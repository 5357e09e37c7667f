package cni

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/url"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containernetworking/cni/pkg/types"

	"github.com/tabbynet/tabby/internal/cni/startup"
)

// Plugin names: the type of the main plugin and of the IPAM plugin.
const (
	PluginType     = "tabby"
	IPAMPluginType = startup.IPAMPluginName
)

// Defaults of the configuration.
const (
	DefaultPolicyTimeout = 10 * time.Second
	DefaultLogLevel      = "info"
)

// NetConf is the network configuration the tabby plugin reads on stdin:
// the standard CNI fields and Tabby's own. ParseNetConf fills it; every
// field is described in docs/cni.md.
type NetConf struct {
	// Standard fields.
	CNIVersion   string          `json:"cniVersion,omitempty"`
	Name         string          `json:"name,omitempty"`
	Type         string          `json:"type,omitempty"`
	Capabilities map[string]bool `json:"capabilities,omitempty"`
	IPAM         IPAMConf        `json:"ipam"`
	DNS          types.DNS       `json:"dns"`
	// Labels are the labels of the CNI "args" convention
	// (args.cni.labels: [{"key": …, "value": …}]), in order.
	Labels []Label `json:"-"`
	// PrevResult is the raw prevResult (CHECK, and chained plugins).
	PrevResult map[string]any `json:"prevResult,omitempty"`
	// ValidAttachments is cni.dev/valid-attachments (GC).
	ValidAttachments []types.GCAttachment `json:"cni.dev/valid-attachments,omitempty"`

	// Tabby's fields.
	Datastore     DatastoreConf `json:"datastore"`
	NodeName      string        `json:"nodename,omitempty"`
	NodeNameFile  string        `json:"nodename_file,omitempty"`
	MTU           int           `json:"mtu,omitempty"`
	PolicyTimeout Duration      `json:"policy_timeout"`
	LogFile       string        `json:"log_file,omitempty"`
	LogLevel      string        `json:"log_level,omitempty"`
	AgentSocket   string        `json:"agent_socket,omitempty"`
}

// IPAMConf is the ipam section. Only Type is read when Type is not
// tabby-ipam: the section then belongs to the delegated plugin.
type IPAMConf struct {
	Type       string   `json:"type,omitempty"`
	AssignIPv4 *Flag    `json:"assign_ipv4,omitempty"`
	AssignIPv6 *Flag    `json:"assign_ipv6,omitempty"`
	IPv4Pools  []string `json:"ipv4_pools,omitempty"`
	IPv6Pools  []string `json:"ipv6_pools,omitempty"`
}

// Tabby reports whether the section selects Tabby's own IPAM.
func (c IPAMConf) Tabby() bool { return c.Type == IPAMPluginType }

// Want returns how many IPv4 and IPv6 addresses Tabby's IPAM assigns.
func (c IPAMConf) Want() (n4, n6 int) {
	if c.AssignIPv4 != nil && bool(*c.AssignIPv4) {
		n4 = 1
	}
	if c.AssignIPv6 != nil && bool(*c.AssignIPv6) {
		n6 = 1
	}
	return n4, n6
}

// DatastoreConf says how to reach the datastore: explicit settings, a
// context of a tabby config file, or both (explicit settings win).
type DatastoreConf struct {
	Endpoints  []string `json:"endpoints,omitempty"`
	CertFile   string   `json:"cert_file,omitempty"`
	KeyFile    string   `json:"key_file,omitempty"`
	CAFile     string   `json:"ca_file,omitempty"`
	Context    string   `json:"context,omitempty"`
	ConfigFile string   `json:"config_file,omitempty"`
}

// Label is one label of the args.cni.labels convention.
type Label struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Flag is a boolean that also accepts the strings "true" and "false", as
// Calico's configuration has them.
type Flag bool

// UnmarshalJSON accepts true, false, "true" and "false".
func (f *Flag) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := strconv.ParseBool(s)
		if err != nil || (s != "true" && s != "false") {
			return fmt.Errorf("%q is not true or false", s)
		}
		*f = Flag(v)
		return nil
	}
	var v bool
	if err := json.Unmarshal(b, &v); err != nil {
		return fmt.Errorf("%s is not true or false", b)
	}
	*f = Flag(v)
	return nil
}

// Duration is a time.Duration written as a Go duration string ("10s",
// "1m30s").
type Duration struct{ time.Duration }

// UnmarshalJSON parses a duration string.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("%s is not a duration string such as \"10s\"", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration such as \"10s\"", s)
	}
	d.Duration = v
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// standardFields are the top-level fields of the CNI specification and its
// conventions that the plugin accepts besides its own. cni.dev/attachments
// is the name libcni also sends for the valid attachments (its spec typo).
var standardFields = []string{
	"cniVersion", "cniVersions", "name", "type", "capabilities", "ipam", "dns",
	"args", "runtimeConfig", "prevResult", "cni.dev/valid-attachments", "cni.dev/attachments",
}

// tabbyFields are the plugin's own top-level fields.
var tabbyFields = []string{
	"datastore", "nodename", "nodename_file", "mtu", "policy_timeout",
	"log_file", "log_level", "agent_socket",
}

// ParseNetConf decodes a network configuration strictly: an unknown
// top-level field, an unknown field in datastore or in a tabby-ipam ipam
// section, or a value of the wrong type is an error that names the field.
// It neither fills defaults nor validates values (see Defaults and
// Validate).
func ParseNetConf(data []byte) (*NetConf, error) {
	return parseNetConf(data, true)
}

// parseNetConf decodes data; with strict false, unknown top-level fields
// are ignored (the IPAM plugin reads the configuration of whatever main
// plugin invoked it).
func parseNetConf(data []byte, strict bool) (*NetConf, error) {
	var top map[string]json.RawMessage
	if err := json.Unmarshal(data, &top); err != nil {
		return nil, fmt.Errorf("network configuration is not a JSON object: %w", err)
	}
	if top == nil {
		return nil, errors.New("network configuration is not a JSON object: null")
	}
	var errs []error
	if strict {
		for _, k := range slices.Sorted(maps.Keys(top)) {
			if !slices.Contains(standardFields, k) && !slices.Contains(tabbyFields, k) {
				errs = append(errs, fmt.Errorf("%s: unknown field (Tabby's fields are %s)", k, strings.Join(tabbyFields, ", ")))
			}
		}
	}
	c := &NetConf{}
	field := func(name string, v any, strictField bool) {
		raw, ok := top[name]
		if !ok {
			return
		}
		if err := decodeField(raw, v, strictField); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", name, err))
		}
	}
	field("cniVersion", &c.CNIVersion, true)
	field("name", &c.Name, true)
	field("type", &c.Type, true)
	field("capabilities", &c.Capabilities, true)
	field("dns", &c.DNS, false)
	field("prevResult", &c.PrevResult, false)
	field("cni.dev/valid-attachments", &c.ValidAttachments, false)
	if _, ok := top["cni.dev/valid-attachments"]; !ok {
		field("cni.dev/attachments", &c.ValidAttachments, false)
	}
	field("datastore", &c.Datastore, true)
	field("nodename", &c.NodeName, true)
	field("nodename_file", &c.NodeNameFile, true)
	field("mtu", &c.MTU, true)
	field("policy_timeout", &c.PolicyTimeout, true)
	field("log_file", &c.LogFile, true)
	field("log_level", &c.LogLevel, true)
	field("agent_socket", &c.AgentSocket, true)
	if raw, ok := top["ipam"]; ok {
		if err := decodeIPAM(raw, &c.IPAM); err != nil {
			errs = append(errs, fmt.Errorf("ipam: %w", err))
		}
	}
	if raw, ok := top["args"]; ok {
		labels, err := decodeLabels(raw)
		if err != nil {
			errs = append(errs, fmt.Errorf("args: %w", err))
		}
		c.Labels = labels
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return c, nil
}

// decodeIPAM reads the ipam section: strictly when it is Tabby's (no type
// or tabby-ipam), only its type otherwise.
func decodeIPAM(raw json.RawMessage, c *IPAMConf) error {
	var typ struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(raw, &typ); err != nil {
		return errors.New("must be an object with a type")
	}
	if typ.Type != "" && typ.Type != IPAMPluginType {
		c.Type = typ.Type
		return nil
	}
	return decodeField(raw, c, true)
}

// decodeLabels reads args.cni.labels and ignores the rest of args, which
// belongs to other conventions.
func decodeLabels(raw json.RawMessage) ([]Label, error) {
	var args struct {
		CNI struct {
			Labels json.RawMessage `json:"labels"`
		} `json:"cni"`
	}
	if err := json.Unmarshal(raw, &args); err != nil {
		return nil, errors.New("must be an object (args.cni.labels: a list of {key, value})")
	}
	if args.CNI.Labels == nil {
		return nil, nil
	}
	var labels []Label
	if err := decodeField(args.CNI.Labels, &labels, true); err != nil {
		return nil, fmt.Errorf("cni.labels: %w", err)
	}
	return labels, nil
}

// decodeField decodes one field's JSON into v, rejecting unknown nested
// fields when strict, and words json's errors for a person.
func decodeField(raw json.RawMessage, v any, strict bool) error {
	dec := json.NewDecoder(bytes.NewReader(raw))
	if strict {
		dec.DisallowUnknownFields()
	}
	if err := dec.Decode(v); err != nil {
		var te *json.UnmarshalTypeError
		if errors.As(err, &te) {
			if te.Field != "" {
				return fmt.Errorf("%s: want %s, have a JSON %s", te.Field, te.Type, te.Value)
			}
			return fmt.Errorf("want %s, have a JSON %s", te.Type, te.Value)
		}
		return errors.New(strings.TrimPrefix(err.Error(), "json: "))
	}
	return nil
}

// Defaults fills the unset fields: ipam type tabby-ipam assigning one IPv4
// address and no IPv6, a policy timeout of 10s and log level info. The
// node name and the agent socket are resolved at run time (see
// docs/cni.md).
func (c *NetConf) Defaults() {
	if c.IPAM.Type == "" {
		c.IPAM.Type = IPAMPluginType
	}
	if c.IPAM.Tabby() {
		if c.IPAM.AssignIPv4 == nil {
			t := Flag(true)
			c.IPAM.AssignIPv4 = &t
		}
		if c.IPAM.AssignIPv6 == nil {
			f := Flag(false)
			c.IPAM.AssignIPv6 = &f
		}
	}
	if c.PolicyTimeout.Duration == 0 {
		c.PolicyTimeout.Duration = DefaultPolicyTimeout
	}
	if c.LogLevel == "" {
		c.LogLevel = DefaultLogLevel
	}
}

// Validate reports every invalid field, each error naming its field. Call
// it after Defaults.
func (c *NetConf) Validate() error {
	var errs []error
	add := func(field, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", field, fmt.Sprintf(format, args...)))
	}
	if c.Name == "" {
		add("name", "must be set")
	}
	if c.IPAM.Tabby() {
		n4, n6 := c.IPAM.Want()
		if n4+n6 == 0 {
			add("ipam", "assign_ipv4 and assign_ipv6 are both false: the workload would have no address")
		}
		for _, p := range []struct {
			field string
			pools []string
		}{{"ipam.ipv4_pools", c.IPAM.IPv4Pools}, {"ipam.ipv6_pools", c.IPAM.IPv6Pools}} {
			for i, name := range p.pools {
				if name == "" || strings.Contains(name, "/") {
					add(fmt.Sprintf("%s[%d]", p.field, i), "%q: must be the name of an IPPool (not a CIDR)", name)
				}
			}
		}
	}
	ds := c.Datastore
	for i, ep := range ds.Endpoints {
		if u, err := url.Parse(ep); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			add(fmt.Sprintf("datastore.endpoints[%d]", i), "%q: must be an http:// or https:// URL", ep)
		}
	}
	if (ds.CertFile == "") != (ds.KeyFile == "") {
		add("datastore", "cert_file and key_file must be set together")
	}
	for _, p := range []struct{ field, path string }{
		{"datastore.cert_file", ds.CertFile}, {"datastore.key_file", ds.KeyFile}, {"datastore.ca_file", ds.CAFile},
		{"datastore.config_file", ds.ConfigFile}, {"nodename_file", c.NodeNameFile}, {"log_file", c.LogFile},
		{"agent_socket", c.AgentSocket},
	} {
		if p.path != "" && !filepath.IsAbs(p.path) {
			add(p.field, "%q: must be an absolute path", p.path)
		}
	}
	if c.NodeName != "" && (strings.Contains(c.NodeName, "/") || strings.TrimSpace(c.NodeName) != c.NodeName) {
		add("nodename", "%q: must not contain '/' or spaces", c.NodeName)
	}
	if c.MTU != 0 {
		_, n6 := c.IPAM.Want()
		lo := 68
		if n6 > 0 {
			lo = 1280
		}
		if c.MTU < lo || c.MTU > 65535 {
			add("mtu", "%d: must be 0 (detect) or between %d and 65535", c.MTU, lo)
		}
	}
	if c.PolicyTimeout.Duration < 0 {
		add("policy_timeout", "%v: must not be negative", c.PolicyTimeout.Duration)
	}
	switch c.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		add("log_level", "%q: must be debug, info, warn or error", c.LogLevel)
	}
	return errors.Join(errs...)
}

// loadNetConf parses, defaults and validates stdin.
func loadNetConf(data []byte, strict bool) (*NetConf, error) {
	c, err := parseNetConf(data, strict)
	if err != nil {
		return nil, err
	}
	c.Defaults()
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}
