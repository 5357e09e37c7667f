package lab

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"

	"github.com/tabbynet/tabby/internal/cni"
	"github.com/tabbynet/tabby/internal/netns"
)

// The lab's workloads are attached by Tabby's CNI plugin, as on a real
// host: Up installs the plugin into DIR/cni/bin (tabby and tabby-ipam,
// symlinks to the lab's binary) and writes one network configuration list
// per node into DIR/cni/net.d; Run and Down call the plugin through libcni
// from inside the node's namespace.

// networkName is the CNI network of the lab's workloads. The plugin gives
// workloads outside Kubernetes the profile named after their network, so
// it is the name of the lab's open profile.
const networkName = profileName

// cniVersion is the version of the configuration lists the lab writes.
const cniVersion = "1.1.0"

func cniBinDir(lab string) string   { return filepath.Join(Dir(lab), "cni", "bin") }
func cniConfDir(lab string) string  { return filepath.Join(Dir(lab), "cni", "net.d") }
func cniCacheDir(lab string) string { return filepath.Join(Dir(lab), "cni", "cache") }

// cniConfPath is the configuration list of a node.
func cniConfPath(lab, node string) string {
	return filepath.Join(cniConfDir(lab), "10-"+networkName+"-"+node+".conflist")
}

// installCNI puts the plugins into the lab's CNI bin directory and writes
// every node's configuration list.
func installCNI(s *State, bin string) error {
	for _, d := range []string{cniBinDir(s.Name), cniConfDir(s.Name), cniCacheDir(s.Name)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return err
		}
	}
	abs, err := filepath.Abs(bin)
	if err != nil {
		return err
	}
	for _, name := range []string{cni.PluginType, cni.IPAMPluginType} {
		if err := os.Symlink(abs, filepath.Join(cniBinDir(s.Name), name)); err != nil {
			return err
		}
	}
	for _, n := range s.Nodes {
		b, err := conflist(s, n)
		if err != nil {
			return fmt.Errorf("node %s: %w", n.Name, err)
		}
		if err := os.WriteFile(cniConfPath(s.Name, n.Name), b, 0o644); err != nil {
			return err
		}
	}
	return nil
}

// pluginConf is the tabby plugin's configuration on node n: the datastore
// as the node reaches it, the node's name and its agent's status socket
// (the lab's agents do not use the default socket path).
func pluginConf(s *State, n Node) map[string]any {
	return map[string]any{
		"type":         cni.PluginType,
		"datastore":    map[string]any{"endpoints": []string{s.DatastoreURL}},
		"nodename":     n.Name,
		"agent_socket": n.Socket,
		"log_file":     filepath.Join(Dir(s.Name), "logs", "cni.log"),
		"ipam":         map[string]any{"type": cni.IPAMPluginType, "assign_ipv4": true, "assign_ipv6": s.IPv6},
	}
}

// conflist is node n's configuration list, checked as the plugin checks
// it.
func conflist(s *State, n Node) ([]byte, error) {
	pc := pluginConf(s, n)
	pj, err := json.Marshal(pc)
	if err != nil {
		return nil, err
	}
	nc, err := cni.ParseNetConf(pj)
	if err == nil {
		nc.Name = networkName
		nc.Defaults()
		err = nc.Validate()
	}
	if err != nil {
		return nil, fmt.Errorf("the tabby plugin's configuration: %w", err)
	}
	b, err := json.MarshalIndent(map[string]any{"cniVersion": cniVersion, "name": networkName, "plugins": []any{pc}}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// workloadConf is the node's configuration list with the workload's
// labels as args.cni.labels.
func workloadConf(lab string, w Workload) (*libcni.NetworkConfigList, error) {
	b, err := os.ReadFile(cniConfPath(lab, w.Node))
	if err != nil {
		return nil, err
	}
	if len(w.Labels) > 0 {
		var list map[string]any
		if err := json.Unmarshal(b, &list); err != nil {
			return nil, fmt.Errorf("%s: %w", cniConfPath(lab, w.Node), err)
		}
		plugins, _ := list["plugins"].([]any)
		if len(plugins) == 0 {
			return nil, fmt.Errorf("%s: no plugins", cniConfPath(lab, w.Node))
		}
		pc, _ := plugins[0].(map[string]any)
		var labels []cni.Label
		for _, k := range slices.Sorted(maps.Keys(w.Labels)) {
			labels = append(labels, cni.Label{Key: k, Value: w.Labels[k]})
		}
		pc["args"] = map[string]any{"cni": map[string]any{"labels": labels}}
		if b, err = json.Marshal(list); err != nil {
			return nil, err
		}
	}
	return libcni.NetworkConfFromBytes(b)
}

// runtimeConf is the workload's attachment. Workloads of namespace
// default are plain CNI workloads (profile lab-open); those of other
// namespaces are passed as Kubernetes pods (K8S_POD_NAMESPACE and
// K8S_POD_NAME), the plugin's only way to put an endpoint in a namespace,
// and get the engine's allow-all profile kns.NAMESPACE.
func runtimeConf(w Workload) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: w.ContainerID, NetNS: netns.NamedPath(w.NetNS), IfName: "eth0"}
	if w.Namespace != "default" {
		rt.Args = [][2]string{{"K8S_POD_NAMESPACE", w.Namespace}, {"K8S_POD_NAME", w.Name}}
	}
	return rt
}

// containerID is the workload's CNI container ID: its name, prefixed
// with "NAMESPACE-" outside namespace default (Run refuses a workload
// whose container ID another one has).
func containerID(w Workload) string {
	if w.Namespace == "default" {
		return w.Name
	}
	return w.Namespace + "-" + w.Name
}

// inNode runs fn in the node's namespace: the plugins libcni starts from
// there run in it, as a runtime's plugins run on their host.
func inNode(st *State, node string, fn func(c *libcni.CNIConfig) error) error {
	n, ok := st.Node(node)
	if !ok {
		return fmt.Errorf("lab %s has no node %q", st.Name, node)
	}
	ns, err := netns.Open(netns.NamedPath(n.NetNS))
	if err != nil {
		return err
	}
	defer ns.Close()
	c := libcni.NewCNIConfigWithCacheDir([]string{cniBinDir(st.Name)}, cniCacheDir(st.Name), nil)
	return ns.Do(func() error { return fn(c) })
}

// cniAdd attaches the workload (whose namespace exists) through the
// plugin and fills in its host interface and addresses from the result.
func cniAdd(ctx context.Context, st *State, w *Workload) error {
	list, err := workloadConf(st.Name, *w)
	if err != nil {
		return err
	}
	var res *types100.Result
	err = inNode(st, w.Node, func(c *libcni.CNIConfig) error {
		r, err := c.AddNetworkList(ctx, list, runtimeConf(*w))
		if err != nil {
			return err
		}
		res, err = types100.NewResultFromResult(r)
		return err
	})
	if err != nil {
		return fmt.Errorf("CNI ADD of %s on %s: %w", w.ID(), w.Node, err)
	}
	for _, i := range res.Interfaces {
		if i.Sandbox == "" {
			w.Interface = i.Name
		}
	}
	for _, ipc := range res.IPs {
		a, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok {
			continue
		}
		if a = a.Unmap(); a.Is4() {
			w.IPv4 = a
		} else {
			w.IPv6 = a
		}
	}
	return nil
}

// cniDel detaches the workload through the plugin: its veth, its
// WorkloadEndpoint and its addresses.
func cniDel(ctx context.Context, st *State, w Workload) error {
	list, err := workloadConf(st.Name, w)
	if err != nil {
		return err
	}
	err = inNode(st, w.Node, func(c *libcni.CNIConfig) error {
		return c.DelNetworkList(ctx, list, runtimeConf(w))
	})
	if err != nil {
		return fmt.Errorf("CNI DEL of %s on %s: %w", w.ID(), w.Node, err)
	}
	return nil
}
