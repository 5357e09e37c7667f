// Package netns runs code inside Linux network namespaces.
//
// An [NS] is an open file descriptor for a network namespace, opened from a
// path such as /run/netns/NAME (a named namespace, as made by `ip netns add`
// or by [Create]) or /proc/PID/ns/net. [NS.Do] runs a function with the
// calling OS thread switched into the namespace and switches it back
// afterwards.
//
// # OS threads
//
// A network namespace belongs to an OS thread, not to a goroutine or to the
// process. Go moves goroutines between threads at any time, so code that
// changes a thread's namespace must follow these rules, and Do follows them:
//
//   - The goroutine calls runtime.LockOSThread before it switches, so that no
//     other goroutine runs on the thread while it is in the other namespace,
//     and the goroutine itself is not moved away from it.
//   - It switches back before runtime.UnlockOSThread. If switching back
//     fails, the thread is in an unknown namespace: it must stay locked.
//     When a goroutine exits while locked, the runtime ends the thread
//     instead of reusing it, so the tainted thread never runs other code.
//     Do therefore never unlocks a thread that it could not switch back; the
//     error it returns says so, and the caller should let the goroutine end.
//   - Only the calling goroutine is in the namespace. A goroutine started
//     inside the function runs on another thread, in the process's own
//     namespace. Sockets keep the namespace they were created in, so create
//     them inside Do and use them anywhere afterwards.
//   - Child processes inherit the namespace of the thread that starts them,
//     which is what [NS.Start] and [Exec] rely on.
//   - Files under /proc/sys/net show the namespace of the thread that opens
//     them, so sysctls of a namespace are read and written inside Do.
//
// Do may be nested: the inner call switches back to the outer namespace.
package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// RunDir is where named network namespaces are bind-mounted, as with
// `ip netns`.
const RunDir = "/run/netns"

// NS is an open handle to a network namespace. The zero value is not
// usable; get one from [Open], [Create] or [Current]. Methods are safe for
// concurrent use, except Close, which must not race with the others.
type NS struct {
	path string
	fd   int // -1 once closed
}

// Open opens the network namespace at path, for example /run/netns/NAME or
// /proc/PID/ns/net. It fails if path is not a network namespace.
func Open(path string) (*NS, error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening netns %s: %w", path, err)
	}
	if err := checkNetNS(fd); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("opening netns %s: %w", path, err)
	}
	return &NS{path: path, fd: fd}, nil
}

// Current opens the network namespace of the calling thread. Threads that
// no goroutine has locked are all in the process's own namespace (see the
// package documentation), so outside Do this is the process's namespace.
func Current() (*NS, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	p := threadNSPath()
	ns, err := Open(p)
	if err != nil {
		return nil, err
	}
	// The /proc/thread-self path names whichever thread opens it later;
	// report a path that keeps naming this namespace.
	ns.path = fmt.Sprintf("/proc/%d/fd/%d", os.Getpid(), ns.fd)
	return ns, nil
}

// NamedPath returns the path of the named namespace name: /run/netns/NAME.
func NamedPath(name string) string { return filepath.Join(RunDir, name) }

// Path returns the path the namespace was opened from.
func (n *NS) Path() string { return n.path }

// Fd returns the namespace's file descriptor, valid until Close. It is for
// APIs that take a namespace fd, such as netlink's.
func (n *NS) Fd() int { return n.fd }

// Close releases the handle. The namespace itself lives on while it is
// bind-mounted, has processes or is held open elsewhere. Close is
// idempotent.
func (n *NS) Close() error {
	if n.fd < 0 {
		return nil
	}
	err := unix.Close(n.fd)
	n.fd = -1
	if err != nil {
		return fmt.Errorf("closing netns %s: %w", n.path, err)
	}
	return nil
}

// String returns the path.
func (n *NS) String() string { return n.path }

// ErrThreadTainted is wrapped in the error Do returns when it ran fn but
// could not switch the thread back. The thread stays locked to the calling
// goroutine; that goroutine should return, and the runtime then discards
// the thread.
var ErrThreadTainted = errors.New("thread left in foreign network namespace")

// Do runs fn with the calling goroutine locked to its OS thread and that
// thread in the namespace, then switches the thread back and unlocks it.
// It returns fn's error, or an error about switching. If switching back
// fails (which should never happen), Do leaves the thread locked and
// returns an error wrapping [ErrThreadTainted]. A panic in fn is passed on
// after the same clean-up. Do is safe for concurrent use; each call uses
// its own thread.
func (n *NS) Do(fn func() error) (err error) {
	if n.fd < 0 {
		return fmt.Errorf("netns %s: handle is closed", n.path)
	}

	runtime.LockOSThread()
	orig, err := unix.Open(threadNSPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("opening current netns: %w", err)
	}
	defer unix.Close(orig)

	if err := unix.Setns(n.fd, unix.CLONE_NEWNET); err != nil {
		// The thread did not move; it is clean.
		runtime.UnlockOSThread()
		return fmt.Errorf("entering netns %s: %w", n.path, err)
	}

	// Deferred so that it also runs when fn panics.
	defer func() {
		if serr := unix.Setns(orig, unix.CLONE_NEWNET); serr != nil {
			// Keep the thread locked: see the package documentation.
			err = errors.Join(err, fmt.Errorf("leaving netns %s: %w: %w", n.path, ErrThreadTainted, serr))
			return
		}
		runtime.UnlockOSThread()
	}()
	return fn()
}

// Start starts cmd with the new process in the namespace. The caller waits
// for it (cmd.Wait) as usual, and can stop it by its PID.
func (n *NS) Start(cmd *exec.Cmd) error {
	return n.Do(func() error {
		if err := cmd.Start(); err != nil {
			return fmt.Errorf("starting %s in netns %s: %w", cmd.Path, n.path, err)
		}
		return nil
	})
}

// Exec runs the command name with args in the network namespace at nsPath
// and returns its combined output, like `ip netns exec NAME cmd...` or
// `nsenter --net=PATH cmd...`. The command is killed when ctx is done.
func Exec(ctx context.Context, nsPath, name string, args ...string) ([]byte, error) {
	ns, err := Open(nsPath)
	if err != nil {
		return nil, err
	}
	defer ns.Close()
	var out strings.Builder
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := ns.Start(cmd); err != nil {
		return nil, err
	}
	if err := cmd.Wait(); err != nil {
		return []byte(out.String()), fmt.Errorf("running %s in netns %s: %w: %s", name, nsPath, err, strings.TrimSpace(out.String()))
	}
	return []byte(out.String()), nil
}

// Create makes a new named network namespace, bind-mounted at
// /run/netns/NAME exactly as `ip netns add NAME` does, so `ip netns exec`
// can use it, and returns a handle to it. It fails if the name exists.
// Remove it with [Delete].
func Create(name string) (*NS, error) {
	if err := checkName(name); err != nil {
		return nil, err
	}
	if err := prepareRunDir(); err != nil {
		return nil, err
	}
	path := NamedPath(name)
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0)
	if err != nil {
		return nil, fmt.Errorf("creating netns %s: %w", name, err)
	}
	f.Close()

	// A fresh namespace needs a thread to unshare into it. Use a locked
	// thread of our own and switch it back afterwards, as Do does.
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := unix.Open(threadNSPath(), unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("opening current netns: %w", err)
			return
		}
		defer unix.Close(orig)
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("unshare: %w", err)
			return
		}
		merr := unix.Mount(threadNSPath(), path, "none", unix.MS_BIND, "")
		if err := unix.Setns(orig, unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked; this goroutine ends and the
			// runtime discards the thread.
			errc <- errors.Join(merr, fmt.Errorf("leaving new netns: %w: %w", ErrThreadTainted, err))
			return
		}
		runtime.UnlockOSThread()
		if merr != nil {
			merr = fmt.Errorf("bind-mounting netns: %w", merr)
		}
		errc <- merr
	}()
	if err := <-errc; err != nil {
		_ = unix.Unmount(path, unix.MNT_DETACH)
		_ = os.Remove(path)
		return nil, fmt.Errorf("creating netns %s: %w", name, err)
	}
	ns, err := Open(path)
	if err != nil {
		_ = Delete(name)
		return nil, err
	}
	return ns, nil
}

// Delete removes the named namespace made by Create or `ip netns add`, like
// `ip netns delete`: it unmounts and removes /run/netns/NAME. The namespace
// itself goes away once no process or open handle holds it. Deleting a name
// that does not exist is not an error.
func Delete(name string) error {
	if err := checkName(name); err != nil {
		return err
	}
	path := NamedPath(name)
	if err := unix.Unmount(path, unix.MNT_DETACH); err != nil && !errors.Is(err, unix.EINVAL) && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("deleting netns %s: unmount: %w", name, err)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("deleting netns %s: %w", name, err)
	}
	return nil
}

// prepareRunDir makes /run/netns a shared mount point, as iproute2 does, so
// that unmounting a namespace in one mount namespace unmounts it in all.
func prepareRunDir() error {
	if err := os.MkdirAll(RunDir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", RunDir, err)
	}
	madeMount := false
	for {
		err := unix.Mount("", RunDir, "none", unix.MS_SHARED|unix.MS_REC, "")
		if err == nil {
			return nil
		}
		if !errors.Is(err, unix.EINVAL) || madeMount {
			return fmt.Errorf("making %s shared: %w", RunDir, err)
		}
		// Not a mount point yet: bind it onto itself, then retry.
		if err := unix.Mount(RunDir, RunDir, "none", unix.MS_BIND|unix.MS_REC, ""); err != nil {
			return fmt.Errorf("bind-mounting %s: %w", RunDir, err)
		}
		madeMount = true
	}
}

func checkName(name string) error {
	if name == "" || name == "." || name == ".." || strings.ContainsRune(name, '/') {
		return fmt.Errorf("invalid netns name %q", name)
	}
	return nil
}

func checkNetNS(fd int) error {
	var st unix.Statfs_t
	if err := unix.Fstatfs(fd, &st); err != nil {
		return fmt.Errorf("statfs: %w", err)
	}
	if st.Type != unix.NSFS_MAGIC && st.Type != unix.PROC_SUPER_MAGIC {
		return fmt.Errorf("not a namespace file (filesystem type %#x)", st.Type)
	}
	// NS_GET_NSTYPE tells which kind of namespace it is.
	t, err := unix.IoctlRetInt(fd, unix.NS_GET_NSTYPE)
	if err != nil {
		return fmt.Errorf("NS_GET_NSTYPE: %w", err)
	}
	if t != unix.CLONE_NEWNET {
		return fmt.Errorf("not a network namespace (type %#x)", t)
	}
	return nil
}

// threadNSPath names the calling thread's network namespace. /proc/self
// would name the main thread's, which is not the same while a goroutine is
// inside Do.
func threadNSPath() string {
	return fmt.Sprintf("/proc/%d/task/%d/ns/net", os.Getpid(), unix.Gettid())
}
