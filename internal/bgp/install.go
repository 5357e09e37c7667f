package bgp

import (
	"context"
	"log/slog"
	"maps"
	"net/netip"
	"time"

	"github.com/tabbynet/tabby/internal/dataplane/routes"
)

// RouteTable is where an Installer puts learned routes: the routes
// manager of the node's namespace (*routes.Manager has these methods),
// or, in the agent, an adapter that merges them with the workload and
// block routes before handing everything to the one routes manager.
type RouteTable interface {
	// Set replaces the desired learned routes; it is idempotent and does
	// not touch the kernel.
	Set([]routes.Route)
	// Apply makes the kernel match, and reports what it refused.
	Apply(context.Context) (routes.Result, error)
}

// Installer keeps the kernel's learned routes in step with a Speaker.
type Installer struct {
	Speaker *Speaker
	Table   RouteTable
	Log     *slog.Logger
	// Resync is how often Apply runs even with nothing new, to repair
	// drift in the kernel (0: the default, 60s; negative: never, for a
	// caller that repairs the table itself, as the agent does).
	Resync time.Duration
	// RetryDelay is how long to wait after a failed Apply (default 1s).
	RetryDelay time.Duration
}

// Run installs the learned routes whenever they change, until ctx is
// done. It installs nothing before the speaker's routes are synced (see
// Learned.Synced), so that an agent restart does not delete the routes
// its previous run installed. It returns nil when ctx is done.
func (in *Installer) Run(ctx context.Context) error {
	log := in.Log
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	resync := in.Resync
	if resync == 0 {
		resync = DefaultLearnedResync
	}
	retry := in.RetryDelay
	if retry <= 0 {
		retry = time.Second
	}
	var tick <-chan time.Time // nil: no periodic Apply
	if resync > 0 {
		ticker := time.NewTicker(resync)
		defer ticker.Stop()
		tick = ticker.C
	}
	var retryC <-chan time.Time
	waitingLogged := false
	// Refused routes are logged once, when they first show up.
	refused, rejected := map[netip.Prefix]string{}, map[netip.Prefix]string{}
	logNew := func(seen map[netip.Prefix]string, now map[netip.Prefix]string, msg string) {
		for p, why := range now {
			if seen[p] != why {
				log.Warn(msg, "prefix", p, "reason", why)
			}
		}
		clear(seen)
		maps.Copy(seen, now)
	}
	for {
		retryC = nil
		l, err := in.Speaker.Learned(ctx)
		switch {
		case err != nil:
			log.Warn("reading learned routes", "err", err)
			retryC = time.After(retry)
		case !l.Synced:
			if !waitingLogged {
				log.Info("waiting for peers to send their routes before installing learned routes")
				waitingLogged = true
			}
			retryC = time.After(retry)
		default:
			now := map[netip.Prefix]string{}
			for _, r := range l.Rejected {
				now[r.Route.Prefix] = r.Reason
			}
			logNew(rejected, now, "learned route rejected by the safety filter")
			in.Table.Set(KernelRoutes(l.Routes))
			res, err := in.Table.Apply(ctx)
			now = map[netip.Prefix]string{}
			for _, r := range res.Refused {
				now[r.Route.Dst] = r.Reason
			}
			logNew(refused, now, "learned route refused by the routes manager")
			if err != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Warn("installing learned routes", "err", err)
				retryC = time.After(retry)
				break
			}
			in.Speaker.installed(l.Version)
			if res.Writes() > 0 {
				log.Debug("learned routes installed", "routes", len(l.Routes), "rejected", len(l.Rejected), "version", l.Version)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-in.Speaker.Changes():
		case <-tick:
		case <-retryC:
		}
	}
}

// KernelRoutes turns learned routes into routes for the routes manager:
// unicast routes via the next hops' addresses (ECMP when there are
// several), in the main table with Tabby's route protocol.
func KernelRoutes(learned []Route) []routes.Route {
	out := make([]routes.Route, 0, len(learned))
	for _, r := range learned {
		kr := routes.Route{Dst: r.Prefix, Type: routes.Unicast}
		for _, nh := range r.NextHops {
			kr.Nexthops = append(kr.Nexthops, routes.Nexthop{Gateway: nh})
		}
		out = append(out, kr)
	}
	return out
}
