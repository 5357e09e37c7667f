package bench

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
)

// nftGen is one committed nftables transaction (a ruleset generation) as
// a monitor saw it: its changes and the time it was read.
type nftGen struct {
	at      time.Time
	changes []*nftables.MonitorEvent
	err     error // set when the monitor failed (it is then closed)
}

// nftWatch follows the nftables changes of one network namespace through
// netlink notifications (google/nftables' generational monitor): the
// kernel sends the changes of a transaction and then a NEWGEN message
// when it commits, so a change seen here is in the kernel.
//
// The monitor socket has the default receive buffer: a transaction of
// thousands of elements can overflow it, which ends the watch with an
// error (reported by wait and quiet). Open it when changes are small.
type nftWatch struct {
	mon  *nftables.Monitor
	gens chan nftGen
}

// watchNFT starts a watch in the network namespace nsFd (needed only
// while it dials: the socket keeps its namespace).
func watchNFT(nsFd int) (*nftWatch, error) {
	c, err := nftables.New(nftables.WithNetNSFd(nsFd))
	if err != nil {
		return nil, err
	}
	mon := nftables.NewMonitor(nftables.WithMonitorEventBuffer(256))
	ch, err := c.AddGenerationalMonitor(mon)
	if err != nil {
		return nil, fmt.Errorf("monitoring nftables: %w", err)
	}
	w := &nftWatch{mon: mon, gens: make(chan nftGen, 4096)}
	go func() {
		defer close(w.gens)
		for evs := range ch {
			g := nftGen{at: time.Now(), changes: evs.Changes}
			if evs.GeneratedBy != nil && evs.GeneratedBy.Type == nftables.MonitorEventTypeOOB {
				g.err = evs.GeneratedBy.Error
			}
			w.gens <- g
		}
	}()
	return w, nil
}

// Close stops the watch. Idempotent.
func (w *nftWatch) Close() { _ = w.mon.Close() }

// drain discards the generations received so far.
func (w *nftWatch) drain() error {
	for {
		select {
		case g, ok := <-w.gens:
			if !ok {
				return errors.New("nftables monitor closed")
			}
			if g.err != nil {
				return fmt.Errorf("nftables monitor: %w", g.err)
			}
		default:
			return nil
		}
	}
}

// wait returns the time of the first generation with a change that match
// accepts.
func (w *nftWatch) wait(ctx context.Context, timeout time.Duration, match func(*nftables.MonitorEvent) bool) (time.Time, error) {
	t := time.NewTimer(timeout)
	defer t.Stop()
	for {
		select {
		case g, ok := <-w.gens:
			if !ok {
				return time.Time{}, errors.New("nftables monitor closed")
			}
			if g.err != nil {
				return time.Time{}, fmt.Errorf("nftables monitor: %w", g.err)
			}
			for _, ch := range g.changes {
				if ch.Error == nil && match(ch) {
					return g.at, nil
				}
			}
		case <-t.C:
			return time.Time{}, fmt.Errorf("no matching nftables change within %s", timeout)
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		}
	}
}

// quiet waits until no generation has come for d, at most max; it
// returns how long it waited in all.
func (w *nftWatch) quiet(ctx context.Context, d, max time.Duration) (time.Duration, error) {
	start := time.Now()
	deadline := time.NewTimer(max)
	defer deadline.Stop()
	for {
		t := time.NewTimer(d)
		select {
		case g, ok := <-w.gens:
			t.Stop()
			if !ok {
				return time.Since(start), errors.New("nftables monitor closed")
			}
			if g.err != nil {
				return time.Since(start), fmt.Errorf("nftables monitor: %w", g.err)
			}
		case <-t.C:
			return time.Since(start), nil
		case <-deadline.C:
			t.Stop()
			return time.Since(start), fmt.Errorf("nftables still changing after %s", max)
		case <-ctx.Done():
			t.Stop()
			return time.Since(start), ctx.Err()
		}
	}
}

// elemChange matches a set element change of type typ (new or deleted
// element) whose key is the address a.
func elemChange(typ nftables.MonitorEventType, a netip.Addr) func(*nftables.MonitorEvent) bool {
	key := a.AsSlice()
	return func(ev *nftables.MonitorEvent) bool {
		if ev.Type != typ {
			return false
		}
		elems, _ := ev.Data.([]nftables.SetElement)
		for _, e := range elems {
			if bytes.Equal(e.Key, key) {
				return true
			}
		}
		return false
	}
}

// newRuleWithPort matches a new rule in chain that compares something
// (a port) with port: `th dport PORT` is a payload load and a Cmp of two
// big-endian bytes.
func newRuleWithPort(chain string, port uint16) func(*nftables.MonitorEvent) bool {
	want := binary.BigEndian.AppendUint16(nil, port)
	return func(ev *nftables.MonitorEvent) bool {
		if ev.Type != nftables.MonitorEventTypeNewRule {
			return false
		}
		r, _ := ev.Data.(*nftables.Rule)
		if r == nil || r.Chain == nil || r.Chain.Name != chain {
			return false
		}
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Cmp); ok && c.Op == expr.CmpOpEq && bytes.Equal(c.Data, want) {
				return true
			}
		}
		return false
	}
}

// chainSetHas reports whether a set that a rule of chain looks up holds
// address a: a cheap check of one policy's sets, for polling while the
// table changes too much for a monitor.
func chainSetHas(c *nftables.Conn, table, chain string, a netip.Addr) (bool, error) {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	rules, err := c.GetRules(t, &nftables.Chain{Name: chain, Table: t})
	if err != nil {
		return false, nil // the chain does not exist yet
	}
	key := a.AsSlice()
	for _, r := range rules {
		for _, e := range r.Exprs {
			l, ok := e.(*expr.Lookup)
			if !ok || l.SetName == "" {
				continue
			}
			elems, err := c.GetSetElements(&nftables.Set{Table: t, Name: l.SetName})
			if err != nil {
				return false, fmt.Errorf("listing set %s: %w", l.SetName, err)
			}
			for _, el := range elems {
				if bytes.Equal(el.Key, key) {
					return true, nil
				}
			}
		}
	}
	return false, nil
}

// setStats counts the sets of table and their elements.
func setStats(c *nftables.Conn, table string) (sets, elems int, err error) {
	t := &nftables.Table{Name: table, Family: nftables.TableFamilyINet}
	all, err := c.GetSets(t)
	if err != nil {
		return 0, 0, err
	}
	for _, s := range all {
		el, err := c.GetSetElements(s)
		if err != nil {
			return 0, 0, fmt.Errorf("listing set %s: %w", s.Name, err)
		}
		elems += len(el)
	}
	return len(all), elems, nil
}
