package main

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	v1 "github.com/tabbynet/tabby/api/v1"
)

// outputFormat is the value of get's -o flag.
type outputFormat string

const (
	formatTable outputFormat = "table"
	formatWide  outputFormat = "wide"
	formatYAML  outputFormat = "yaml"
	formatJSON  outputFormat = "json"
	formatName  outputFormat = "name"
)

func parseOutputFormat(s string) (outputFormat, error) {
	f := outputFormat(strings.ToLower(s))
	switch f {
	case formatTable, formatWide, formatYAML, formatJSON, formatName:
		return f, nil
	}
	return "", fmt.Errorf("-o: %q: unknown output format; use table, wide, yaml, json or name", s)
}

func (f outputFormat) isTable() bool { return f == formatTable || f == formatWide }

// column is one table column: a header and a dotted path into the
// object's JSON form. len(path) counts a list instead of printing it.
type column struct {
	header string
	path   string
	wide   bool
	count  bool
}

// policyColumns are the columns of both kinds of policy.
var policyColumns = []column{
	{header: "TIER", path: "spec.tier"},
	{header: "ORDER", path: "spec.order"},
	{header: "SELECTOR", path: "spec.selector"},
	{header: "TYPES", path: "spec.types", wide: true},
	{header: "INGRESS", path: "spec.ingress", count: true, wide: true},
	{header: "EGRESS", path: "spec.egress", count: true, wide: true},
}

// columns per kind, after NAME (and NAMESPACE with -A) and before AGE.
var columns = map[string][]column{
	"Node": {
		{header: "ASN", path: "spec.bgp.asNumber"},
		{header: "IPV4", path: "spec.bgp.ipv4Address"},
		{header: "IPV6", path: "spec.bgp.ipv6Address"},
		{header: "RR-CLUSTER", path: "spec.bgp.routeReflectorClusterID", wide: true},
	},
	"WorkloadEndpoint": {
		{header: "NODE", path: "spec.node"},
		{header: "NETWORKS", path: "spec.ipNetworks"},
		{header: "INTERFACE", path: "spec.interfaceName"},
		{header: "ORCHESTRATOR", path: "spec.orchestrator", wide: true},
		{header: "WORKLOAD", path: "spec.workload", wide: true},
		{header: "PROFILES", path: "spec.profiles", wide: true},
	},
	"HostEndpoint": {
		{header: "NODE", path: "spec.node"},
		{header: "INTERFACE", path: "spec.interfaceName"},
		{header: "EXPECTED-IPS", path: "spec.expectedIPs"},
		{header: "PROFILES", path: "spec.profiles", wide: true},
	},
	"Profile": {
		{header: "INGRESS", path: "spec.ingress", count: true},
		{header: "EGRESS", path: "spec.egress", count: true},
		{header: "LABELS-TO-APPLY", path: "spec.labelsToApply", wide: true},
	},
	"Tier": {
		{header: "ORDER", path: "spec.order"},
		{header: "DEFAULT-ACTION", path: "spec.defaultAction"},
	},
	"NetworkPolicy": policyColumns,
	"GlobalNetworkPolicy": append(slices.Clip(policyColumns),
		column{header: "NAMESPACE-SELECTOR", path: "spec.namespaceSelector", wide: true},
		column{header: "APPLY-ON-FORWARD", path: "spec.applyOnForward", wide: true},
	),
	"NetworkSet":       {{header: "NETS", path: "spec.nets"}},
	"GlobalNetworkSet": {{header: "NETS", path: "spec.nets"}},
	"Namespace":        {{header: "LABELS", path: "metadata.labels"}},
	"IPPool": {
		{header: "CIDR", path: "spec.cidr"},
		{header: "BLOCK-SIZE", path: "spec.blockSize"},
		{header: "NAT", path: "spec.natOutgoing"},
		{header: "DISABLED", path: "spec.disabled"},
		{header: "NODE-SELECTOR", path: "spec.nodeSelector", wide: true},
		{header: "ALLOWED-USES", path: "spec.allowedUses", wide: true},
	},
	"IPAMConfiguration": {
		{header: "STRICT-AFFINITY", path: "spec.strictAffinity"},
		{header: "MAX-BLOCKS-PER-HOST", path: "spec.maxBlocksPerHost"},
	},
	"BGPConfiguration": {
		{header: "ASN", path: "spec.asNumber"},
		{header: "MESH", path: "spec.nodeToNodeMeshEnabled"},
		{header: "LISTEN-PORT", path: "spec.listenPort", wide: true},
	},
	"BGPPeer": {
		{header: "PEER-IP", path: "spec.peerIP"},
		{header: "ASN", path: "spec.asNumber"},
		{header: "NODE", path: "spec.node"},
		{header: "NODE-SELECTOR", path: "spec.nodeSelector", wide: true},
		{header: "PEER-SELECTOR", path: "spec.peerSelector", wide: true},
	},
	"Configuration": {
		{header: "LOG-LEVEL", path: "spec.logSeverityScreen"},
		{header: "ENDPOINT-TO-HOST", path: "spec.defaultEndpointToHostAction"},
	},
}

// now is the clock for the AGE column.
var now = time.Now

// printObjects writes objs, all of kind info, in format f.
func printObjects(w io.Writer, objs []v1.Object, info v1.KindInfo, f outputFormat, allNamespaces bool) error {
	switch f {
	case formatYAML:
		data, err := v1.EncodeYAML(objs...)
		if err != nil {
			return err
		}
		_, err = w.Write(data)
		return err
	case formatJSON:
		var v any
		if len(objs) == 1 {
			v = objs[0]
		} else {
			v = map[string]any{"apiVersion": v1.APIVersion, "kind": "List", "items": objs}
		}
		data, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			return err
		}
		_, err = fmt.Fprintf(w, "%s\n", data)
		return err
	case formatName:
		for _, o := range objs {
			fmt.Fprintln(w, objectRef(o))
		}
		return nil
	}
	return printTable(w, objs, info, f == formatWide, allNamespaces)
}

func printTable(w io.Writer, objs []v1.Object, info v1.KindInfo, wide, allNamespaces bool) error {
	var cols []column
	for _, c := range columns[info.Kind] {
		if wide || !c.wide {
			cols = append(cols, c)
		}
	}
	tw := tabwriter.NewWriter(w, 0, 8, 3, ' ', 0)
	var header []string
	if allNamespaces && info.Namespaced {
		header = append(header, "NAMESPACE")
	}
	header = append(header, "NAME")
	for _, c := range cols {
		header = append(header, c.header)
	}
	header = append(header, "AGE")
	fmt.Fprintln(tw, strings.Join(header, "\t"))
	for _, o := range objs {
		generic, err := toGeneric(o)
		if err != nil {
			return err
		}
		m := o.GetObjectMeta()
		var row []string
		if allNamespaces && info.Namespaced {
			row = append(row, m.Namespace)
		}
		row = append(row, m.Name)
		for _, c := range cols {
			row = append(row, cell(lookupPath(generic, c.path), c.count))
		}
		row = append(row, age(m.CreationTimestamp))
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func toGeneric(o v1.Object) (map[string]any, error) {
	data, err := json.Marshal(o)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	return m, json.Unmarshal(data, &m)
}

func lookupPath(v any, path string) any {
	for _, p := range strings.Split(path, ".") {
		m, ok := v.(map[string]any)
		if !ok {
			return nil
		}
		v = m[p]
	}
	return v
}

// cell formats one table value; absent values print as <none>.
func cell(v any, count bool) string {
	if count {
		l, _ := v.([]any)
		return strconv.Itoa(len(l))
	}
	switch x := v.(type) {
	case nil:
		return "<none>"
	case string:
		if x == "" {
			return "<none>"
		}
		return x
	case float64:
		return strconv.FormatFloat(x, 'f', -1, 64)
	case bool:
		return strconv.FormatBool(x)
	case []any:
		if len(x) == 0 {
			return "<none>"
		}
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = cell(e, false)
		}
		return strings.Join(parts, ",")
	case map[string]any:
		if len(x) == 0 {
			return "<none>"
		}
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = k + "=" + cell(x[k], false)
		}
		return strings.Join(parts, ",")
	}
	return fmt.Sprint(v)
}

// age formats the time since t like kubectl: 45s, 12m, 5h, 3d.
func age(t *time.Time) string {
	if t == nil {
		return "<unknown>"
	}
	d := now().Sub(*t)
	switch {
	case d < 0:
		return "0s"
	case d < 2*time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < 2*time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}
