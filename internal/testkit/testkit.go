// Package testkit holds helpers shared by Tabby's tests: skipping tests
// that need root, the kernel or a command (failing instead under
// TABBY_E2E=1), throwaway network namespaces with names unique to the test
// process, removed again by t.Cleanup, and workload namespaces wired to a
// host namespace the way the CNI plugin wires them.
package testkit

import (
	"os"
	"os/exec"
	"testing"
)

// EnvE2E is the environment variable that, set to "1", turns skips of
// kernel tests into failures, so that CI cannot pass by skipping them.
const EnvE2E = "TABBY_E2E"

// RequireRoot skips the test unless it runs as root with the `ip` tool
// installed. With TABBY_E2E=1 it fails the test instead of skipping it.
func RequireRoot(t testing.TB) {
	t.Helper()
	var why string
	if os.Geteuid() != 0 {
		why = "needs root"
	} else if _, err := exec.LookPath("ip"); err != nil {
		why = "needs the ip tool (iproute2)"
	}
	if why == "" {
		return
	}
	if os.Getenv(EnvE2E) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", why, EnvE2E)
	}
	t.Skip(why)
}

// RequireCommand skips the test unless the command is on PATH, or fails it
// when TABBY_E2E=1. pkg names the Debian package that provides it.
func RequireCommand(t testing.TB, name, pkg string) {
	t.Helper()
	if _, err := exec.LookPath(name); err == nil {
		return
	}
	why := "needs " + name + " (Debian " + pkg + ")"
	if os.Getenv(EnvE2E) == "1" {
		t.Fatalf("%s, and %s=1 forbids skipping", why, EnvE2E)
	}
	t.Skip(why)
}
