package netns_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/tabbynet/tabby/internal/netns"
	"github.com/tabbynet/tabby/internal/testkit"
)

// inode returns the inode of the namespace file at path.
func inode(t *testing.T, path string) uint64 {
	t.Helper()
	var st unix.Stat_t
	if err := unix.Stat(path, &st); err != nil {
		t.Fatalf("stat %s: %v", path, err)
	}
	return st.Ino
}

func threadNS(t *testing.T) uint64 {
	return inode(t, fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid()))
}

func TestCreateDoDelete(t *testing.T) {
	testkit.RequireRoot(t)
	name := testkit.UniqueName()
	ns, err := netns.Create(name)
	if err != nil {
		t.Fatalf("Create: %v", err)
	}
	t.Cleanup(func() {
		ns.Close()
		netns.Delete(name)
	})
	if got, want := ns.Path(), "/run/netns/"+name; got != want {
		t.Errorf("Path() = %q, want %q", got, want)
	}
	if _, err := netns.Create(name); err == nil {
		t.Errorf("Create of an existing name succeeded")
	}

	host := inode(t, "/proc/self/ns/net")
	target := inode(t, ns.Path())
	if host == target {
		t.Fatalf("new namespace has the host's inode")
	}
	var inside uint64
	if err := ns.Do(func() error { inside = threadNS(t); return nil }); err != nil {
		t.Fatalf("Do: %v", err)
	}
	if inside != target {
		t.Errorf("inside Do: netns inode %d, want %d", inside, target)
	}

	// Errors from fn come back unchanged.
	sentinel := errors.New("boom")
	if err := ns.Do(func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do returned %v, want %v", err, sentinel)
	}

	// `ip netns exec` sees the namespace: it has only lo.
	out, err := exec.Command("ip", "netns", "exec", name, "ip", "-o", "link", "show").CombinedOutput()
	if err != nil {
		t.Fatalf("ip netns exec: %v: %s", err, out)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "lo:") {
		t.Errorf("ip netns exec %s ip link: %q, want only lo", name, out)
	}

	if err := ns.Close(); err != nil {
		t.Errorf("Close: %v", err)
	}
	if err := ns.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	if err := ns.Do(func() error { return nil }); err == nil {
		t.Errorf("Do on a closed handle succeeded")
	}
	if err := netns.Delete(name); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	if _, err := os.Stat(netns.NamedPath(name)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("after Delete, stat: %v", err)
	}
	if err := netns.Delete(name); err != nil {
		t.Errorf("second Delete: %v", err)
	}
}

// TestDoRestoresThread checks that every thread Do used is back in the
// host namespace afterwards, also after a panic in fn.
func TestDoRestoresThread(t *testing.T) {
	ns := testkit.NetNS(t)
	host := inode(t, "/proc/self/ns/net")

	func() {
		defer func() {
			if r := recover(); r == nil {
				t.Errorf("panic in fn was not passed on")
			}
		}()
		_ = ns.Do(func() error { panic("boom") })
	}()

	// Run many goroutines: if any thread had been left in ns, one of them
	// would see it.
	errc := make(chan error, 64)
	for range 64 {
		go func() {
			if err := ns.Do(func() error { time.Sleep(time.Millisecond); return nil }); err != nil {
				errc <- err
				return
			}
			var st unix.Stat_t
			p := fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
			if err := unix.Stat(p, &st); err != nil {
				errc <- err
				return
			}
			if st.Ino != host {
				errc <- fmt.Errorf("thread %d in netns %d after Do, want host %d", unix.Gettid(), st.Ino, host)
				return
			}
			errc <- nil
		}()
	}
	for range 64 {
		if err := <-errc; err != nil {
			t.Error(err)
		}
	}
}

func TestNestedDo(t *testing.T) {
	a := testkit.NetNS(t)
	b := testkit.NetNS(t)
	ia, ib := inode(t, a.Path()), inode(t, b.Path())
	var got []uint64
	err := a.Do(func() error {
		got = append(got, threadNS(t))
		if err := b.Do(func() error { got = append(got, threadNS(t)); return nil }); err != nil {
			return err
		}
		got = append(got, threadNS(t))
		return nil
	})
	if err != nil {
		t.Fatalf("Do: %v", err)
	}
	want := []uint64{ia, ib, ia}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("namespaces seen = %v, want %v", got, want)
	}
}

func TestOpen(t *testing.T) {
	ns := testkit.NetNS(t)
	again, err := netns.Open(ns.Path())
	if err != nil {
		t.Fatalf("Open(%s): %v", ns.Path(), err)
	}
	defer again.Close()
	if inode(t, again.Path()) != inode(t, ns.Path()) {
		t.Errorf("reopened handle names another namespace")
	}
	if _, err := netns.Open("/etc/hostname"); err == nil {
		t.Errorf("Open of a regular file succeeded")
	}
	if _, err := netns.Open("/proc/self/ns/uts"); err == nil {
		t.Errorf("Open of a UTS namespace succeeded")
	}
	if _, err := netns.Open("/run/netns/does-not-exist-tbt"); err == nil {
		t.Errorf("Open of a missing path succeeded")
	}

	cur, err := netns.Current()
	if err != nil {
		t.Fatalf("Current: %v", err)
	}
	defer cur.Close()
	if inode(t, cur.Path()) != inode(t, "/proc/self/ns/net") {
		t.Errorf("Current() is not the process's namespace")
	}
}

func TestExec(t *testing.T) {
	ns := testkit.NetNS(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := netns.Exec(ctx, ns.Path(), "ip", "-o", "link", "show")
	if err != nil {
		t.Fatalf("Exec: %v", err)
	}
	if lines := strings.Split(strings.TrimSpace(string(out)), "\n"); len(lines) != 1 || !strings.Contains(lines[0], "lo:") {
		t.Errorf("ip link in new namespace: %q, want only lo", out)
	}
	if _, err := netns.Exec(ctx, ns.Path(), "false"); err == nil {
		t.Errorf("Exec of false succeeded")
	}
}
