package main

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	v1 "github.com/tabbynet/tabby/api/v1"
	"github.com/tabbynet/tabby/internal/datastore"
	"github.com/tabbynet/tabby/internal/ipam"
	"github.com/tabbynet/tabby/internal/selector"
)

func newApplyCommand(a *app) *cobra.Command {
	return newWriteCommand(a, "apply", false)
}

func newCreateCommand(a *app) *cobra.Command {
	return newWriteCommand(a, "create", true)
}

// newWriteCommand builds apply (create or update) and create (create
// only; nothing is written if any object exists).
func newWriteCommand(a *app, name string, createOnly bool) *cobra.Command {
	var mf manifestFlags
	var dryRun bool
	short := "Create or update resources from files"
	if createOnly {
		short = "Create resources from files; fail, writing nothing, if any exists"
	}
	cmd := &cobra.Command{
		Use:   name + " -f FILE|DIR|- [-f …] [-R]",
		Short: short,
		Long: short + `.

Every document of every file is decoded and validated first; if any is
invalid, nothing is written and every problem is listed with its file,
document, object and field. Manifests may be tabby.dev/v1, Calico
projectcalico.org/v3, Kubernetes networking.k8s.io/v1 NetworkPolicy or v1
Namespace.`,
		Example: fmt.Sprintf(`  tabby %[1]s -f policy.yaml
  tabby %[1]s -f examples/
  tabby %[1]s -f manifests/ -R
  cat pools.yaml | tabby %[1]s -f -`, name),
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			objs, err := mf.read(a.streams.in)
			if err != nil {
				return err
			}
			ctx, c, done, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			res, err := c.Apply(ctx, objs, datastore.ApplyOptions{CreateOnly: createOnly, DryRun: dryRun})
			if err != nil {
				return err
			}
			suffix := ""
			if dryRun {
				suffix = " (dry run)"
			}
			for _, r := range res {
				fmt.Fprintf(a.streams.out, "%s %s%s\n", objectRef(r.Object), r.Action, suffix)
			}
			return nil
		},
	}
	cmd.Flags().StringSliceVarP(&mf.files, "filename", "f", nil, "file, directory or - (standard input); repeatable")
	cmd.Flags().BoolVarP(&mf.recursive, "recursive", "R", false, "read directories recursively")
	cmd.Flags().BoolVar(&dryRun, "dry-run", false, "validate against the datastore and report, but write nothing")
	return cmd
}

// objectRef names an object the way apply and delete report it, e.g.
// networkpolicy.tabby.dev/default/web.
func objectRef(obj v1.Object) string {
	m := obj.GetObjectMeta()
	ref := strings.ToLower(obj.GetTypeMeta().Kind) + "." + v1.Group + "/"
	if m.Namespace != "" {
		ref += m.Namespace + "/"
	}
	return ref + m.Name
}

// namespaceFlags are -n and -A.
type namespaceFlags struct {
	namespace     string
	allNamespaces bool
}

func (n *namespaceFlags) register(cmd *cobra.Command, all bool) {
	cmd.Flags().StringVarP(&n.namespace, "namespace", "n", "default", "namespace of namespaced kinds")
	if all {
		cmd.Flags().BoolVarP(&n.allNamespaces, "all-namespaces", "A", false, "list across all namespaces")
	}
}

// lookupKind resolves a kind argument, naming the valid kinds on error.
func lookupKind(arg string) (v1.KindInfo, error) {
	info, ok := v1.LookupKind(arg)
	if ok {
		return info, nil
	}
	var names []string
	for _, k := range v1.Kinds() {
		names = append(names, strings.ToLower(k.Kind))
	}
	return v1.KindInfo{}, fmt.Errorf("unknown kind %q; kinds are: %s", arg, strings.Join(names, ", "))
}

func newGetCommand(a *app) *cobra.Command {
	var ns namespaceFlags
	var output, labelSelector string
	cmd := &cobra.Command{
		Use:   "get KIND [NAME…] [-n NS | -A] [-o table|wide|yaml|json|name] [-l SELECTOR]",
		Short: "Show resources",
		Long: `Show resources of one kind. KIND is case-insensitive and may be plural or
short (networkpolicies, netpol, gnp, ippools, wep, …). -l filters by labels with
a Tabby selector expression.`,
		Example: `  tabby get networkpolicy -A
  tabby get gnp deny-all -o yaml
  tabby get ippools -o wide
  tabby get wep -n prod -l 'app == "web"'
  tabby get networkpolicies -A -o yaml > backup.yaml`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			info, err := lookupKind(args[0])
			if err != nil {
				return err
			}
			format, err := parseOutputFormat(output)
			if err != nil {
				return err
			}
			var sel *selector.Selector
			if labelSelector != "" {
				if sel, err = selector.Parse(labelSelector); err != nil {
					return fmt.Errorf("-l: %w", err)
				}
			}
			if ns.allNamespaces && len(args) > 1 {
				return errors.New("-A: cannot be used with names")
			}
			ctx, c, done, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()

			var objs []v1.Object
			if len(args) > 1 {
				for _, name := range args[1:] {
					obj, err := c.Get(ctx, info, ns.namespace, name)
					if errors.Is(err, datastore.ErrNotFound) {
						return notFound(info, ns.namespace, name)
					}
					if err != nil {
						return err
					}
					objs = append(objs, obj)
				}
			} else {
				namespace := ns.namespace
				if ns.allNamespaces {
					namespace = ""
				}
				if objs, _, err = c.List(ctx, info, namespace); err != nil {
					return err
				}
			}
			if sel != nil {
				objs = filterByLabels(objs, sel)
			}
			if len(objs) == 0 && format.isTable() {
				where := ""
				if info.Namespaced && !ns.allNamespaces {
					where = fmt.Sprintf(" in namespace %q", ns.namespace)
				}
				fmt.Fprintf(a.streams.err, "No %s found%s.\n", info.Plural, where)
				return nil
			}
			return printObjects(a.streams.out, objs, info, format, ns.allNamespaces)
		},
	}
	ns.register(cmd, true)
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, wide, yaml, json or name")
	cmd.Flags().StringVarP(&labelSelector, "selector", "l", "", "only objects whose labels match this selector")
	return cmd
}

func notFound(info v1.KindInfo, namespace, name string) error {
	if info.Namespaced {
		return fmt.Errorf("%s %q not found in namespace %q", strings.ToLower(info.Kind), name, namespace)
	}
	return fmt.Errorf("%s %q not found", strings.ToLower(info.Kind), name)
}

func filterByLabels(objs []v1.Object, sel *selector.Selector) []v1.Object {
	out := objs[:0]
	for _, o := range objs {
		if sel.Evaluate(selector.Map(o.GetObjectMeta().Labels)) {
			out = append(out, o)
		}
	}
	return out
}

func newDeleteCommand(a *app) *cobra.Command {
	var ns namespaceFlags
	var mf manifestFlags
	var ignoreNotFound bool
	cmd := &cobra.Command{
		Use:   "delete (KIND NAME… [-n NS] | -f FILE|DIR|-)",
		Short: "Delete resources by kind and name, or those named in files",
		Example: `  tabby delete networkpolicy web -n prod
  tabby delete gnp deny-all
  tabby delete -f policy.yaml
  tabby delete ippool old-pool --ignore-not-found`,
		RunE: func(cmd *cobra.Command, args []string) error {
			type target struct {
				info            v1.KindInfo
				namespace, name string
			}
			var targets []target
			switch {
			case len(mf.files) > 0 && len(args) > 0:
				return errors.New("-f: cannot be combined with KIND NAME arguments")
			case len(mf.files) > 0:
				objs, err := mf.read(a.streams.in)
				if err != nil {
					return err
				}
				for _, o := range objs {
					info, _ := v1.LookupKind(o.GetTypeMeta().Kind)
					m := o.GetObjectMeta()
					targets = append(targets, target{info, m.Namespace, m.Name})
				}
			case len(args) >= 2:
				info, err := lookupKind(args[0])
				if err != nil {
					return err
				}
				for _, name := range args[1:] {
					targets = append(targets, target{info, ns.namespace, name})
				}
			default:
				return errors.New("give KIND and at least one NAME, or -f FILE")
			}
			ctx, c, done, err := a.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer done()
			var errs []error
			for _, t := range targets {
				if err := checkDeletable(ctx, c, t.info, t.name); err != nil {
					errs = append(errs, err)
					continue
				}
				obj, err := c.Delete(ctx, t.info, t.namespace, t.name, "")
				switch {
				case errors.Is(err, datastore.ErrNotFound):
					if !ignoreNotFound {
						errs = append(errs, notFound(t.info, t.namespace, t.name))
					}
				case err != nil:
					errs = append(errs, err)
				default:
					fmt.Fprintf(a.streams.out, "%s deleted\n", objectRef(obj))
					if t.info.Kind == "Node" {
						if err := releaseNodeBlocks(ctx, c, a, t.name); err != nil {
							errs = append(errs, fmt.Errorf("node %s deleted, but releasing its address blocks failed (IPAM GC will retry): %w", t.name, err))
						}
					}
				}
			}
			return errors.Join(errs...)
		},
	}
	ns.register(cmd, false)
	cmd.Flags().StringSliceVarP(&mf.files, "filename", "f", nil, "file, directory or - naming the objects to delete")
	cmd.Flags().BoolVarP(&mf.recursive, "recursive", "R", false, "read directories recursively")
	cmd.Flags().BoolVar(&ignoreNotFound, "ignore-not-found", false, "treat objects that do not exist as deleted")
	return cmd
}

// checkDeletable refuses to delete an IP pool that still has addresses in
// use. (An allocation that races with the delete is caught by
// tabby ipam check, and the blocks of a deleted pool stay valid.)
func checkDeletable(ctx context.Context, c *datastore.Client, info v1.KindInfo, name string) error {
	if info.Kind != "IPPool" {
		return nil
	}
	obj, err := c.Get(ctx, info, "", name)
	if errors.Is(err, datastore.ErrNotFound) {
		return nil // reported by the delete itself
	}
	if err != nil {
		return err
	}
	inUse, reason, err := ipam.PoolInUse(ctx, c.Store(), obj.(*v1.IPPool))
	if err != nil {
		return fmt.Errorf("ippool %q: checking whether it is in use: %w", name, err)
	}
	if inUse {
		return fmt.Errorf("ippool %q: cannot delete a pool that is in use: %s (release the addresses first; see tabby ipam show)", name, reason)
	}
	return nil
}

// releaseNodeBlocks gives back the address blocks of a deleted node.
func releaseNodeBlocks(ctx context.Context, c *datastore.Client, a *app, node string) error {
	alloc, err := ipam.New(c.Store(), ipam.Config{Logger: a.logger()})
	if err != nil {
		return err
	}
	return alloc.ReleaseNodeAffinities(ctx, node)
}
