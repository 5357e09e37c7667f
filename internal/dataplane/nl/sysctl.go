package nl

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// sysctlPath turns a sysctl name into its /proc/sys path. Names use dots
// ("net.ipv4.conf.eth0.proxy_arp") or slashes ("net/ipv4/conf/eth0.100/
// proxy_arp"); use slashes when an interface name has a dot. Only net.*
// sysctls are allowed: they are the ones a network namespace has its own
// copy of, so a Handle can never change a machine-wide setting by mistake.
func sysctlPath(name string) (string, error) {
	rel := name
	if !strings.Contains(rel, "/") {
		rel = strings.ReplaceAll(rel, ".", "/")
	}
	clean := filepath.Clean(rel)
	if clean != rel || !strings.HasPrefix(clean, "net/") {
		return "", fmt.Errorf("sysctl %q: only net.* sysctls of a namespace are allowed", name)
	}
	return filepath.Join("/proc/sys", clean), nil
}

// SysctlGet reads a sysctl of the handle's namespace, without the trailing
// newline. A sysctl that does not exist (for example of a missing
// interface) is an error matching ErrNotFound.
func (h *Handle) SysctlGet(name string) (string, error) {
	p, err := sysctlPath(name)
	if err != nil {
		return "", err
	}
	var val []byte
	err = h.ns.Do(func() error {
		var rerr error
		val, rerr = os.ReadFile(p)
		return rerr
	})
	if err != nil {
		return "", sysctlErr("reading", name, err)
	}
	return strings.TrimRight(string(val), "\n"), nil
}

// SysctlSet writes a sysctl of the handle's namespace. A sysctl that does
// not exist is an error matching ErrNotFound.
func (h *Handle) SysctlSet(name, value string) error {
	p, err := sysctlPath(name)
	if err != nil {
		return err
	}
	err = h.ns.Do(func() error {
		// O_WRONLY without O_CREATE: a missing file is ENOENT.
		f, err := os.OpenFile(p, os.O_WRONLY, 0)
		if err != nil {
			return err
		}
		if _, err := f.WriteString(value); err != nil {
			f.Close()
			return err
		}
		return f.Close()
	})
	if err != nil {
		return sysctlErr("writing", name+"="+value, err)
	}
	return nil
}

func sysctlErr(op, what string, err error) error {
	if errors.Is(err, os.ErrNotExist) {
		err = kindError{kind: ErrNotFound, err: err}
	}
	return fmt.Errorf("%s sysctl %s: %w", op, what, err)
}
