package testkit

import (
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/tabbynet/tabby/internal/netns"
)

// NamePrefix starts the name of every namespace a test makes.
const NamePrefix = "tbt-"

var (
	counter   atomic.Uint64
	sweepOnce sync.Once
)

// UniqueName returns a short name that no other test, in this process or in
// another test binary running at the same time, uses: "tbt-PID-N".
func UniqueName() string {
	return fmt.Sprintf("%s%d-%d", NamePrefix, os.Getpid(), counter.Add(1))
}

// NetNS creates a named network namespace with a unique name and returns a
// handle to it. t.Cleanup closes the handle and deletes the namespace, which
// also destroys the links in it (and the veth peers of those links). The
// first call in a process also deletes namespaces left behind by test
// processes that no longer exist (killed before their clean-up ran).
func NetNS(t testing.TB) *netns.NS {
	t.Helper()
	RequireRoot(t)
	sweepOnce.Do(sweepStale)
	name := UniqueName()
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatalf("creating netns: %v", err)
	}
	t.Cleanup(func() {
		if err := ns.Close(); err != nil {
			t.Errorf("closing netns %s: %v", name, err)
		}
		if err := netns.Delete(name); err != nil {
			t.Errorf("deleting netns %s: %v", name, err)
		}
	})
	return ns
}

// sweepStale deletes tbt-PID-N namespaces whose PID is not a live process.
func sweepStale() {
	entries, err := os.ReadDir(netns.RunDir)
	if err != nil {
		return
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), NamePrefix)
		if !ok {
			continue
		}
		pidStr, _, ok := strings.Cut(rest, "-")
		if !ok {
			continue
		}
		pid, err := strconv.Atoi(pidStr)
		if err != nil || pid <= 0 || processAlive(pid) {
			continue
		}
		_ = netns.Delete(e.Name())
	}
}

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
