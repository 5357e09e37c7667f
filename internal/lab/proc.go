package lab

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a detached process the lab started.
type Proc struct {
	PID int `json:"pid"`
	// StartTime is the process's start time in clock ticks since boot
	// (/proc/PID/stat field 22); with the PID it identifies the process,
	// so a recycled PID is never signalled.
	StartTime uint64   `json:"startTime"`
	Log       string   `json:"log"`
	Args      []string `json:"args"`
}

// startDetached starts args (args[0] is looked up in PATH unless it is
// absolute) in a new session with stdin from /dev/null and stdout and
// stderr appended to logPath, and returns it without waiting for it. With
// netnsName set it runs under `ip netns exec netnsName` (which execs, so
// the PID is the command's own). extra are passed as fds 3, 4, ….
func startDetached(logPath, netnsName string, extra []*os.File, args ...string) (*Proc, error) {
	if netnsName != "" {
		args = append([]string{"ip", "netns", "exec", netnsName}, args...)
	}
	logf, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.ExtraFiles = extra
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s: %w", strings.Join(args, " "), err)
	}
	p := &Proc{PID: cmd.Process.Pid, Log: logPath, Args: args}
	p.StartTime, _ = startTime(p.PID)
	// Reap it if it exits while we still run; the lab outlives us
	// otherwise (the process is then re-parented to init).
	go func() { _ = cmd.Wait() }()
	return p, nil
}

// startTime reads field 22 of /proc/PID/stat.
func startTime(pid int) (uint64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, err
	}
	// The command name (field 2) is in parentheses and may hold spaces.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return 0, errors.New("malformed stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// f[0] is field 3 (state), so field 22 is f[19].
	if len(f) < 20 {
		return 0, errors.New("malformed stat")
	}
	return strconv.ParseUint(f[19], 10, 64)
}

// Alive reports whether the recorded process still runs (and is not a
// zombie). A PID now used by another process counts as gone.
func (p *Proc) Alive() bool {
	if p == nil || p.PID <= 0 {
		return false
	}
	st, err := startTime(p.PID)
	if err != nil || (p.StartTime != 0 && st != p.StartTime) {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.PID))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(b, ')')
	return i < 0 || i+2 >= len(b) || b[i+2] != 'Z'
}

// stop sends SIGTERM to the process (only if it is still the recorded
// one), waits up to grace for it to end, then sends SIGKILL.
func (p *Proc) stop(grace time.Duration) error {
	if !p.Alive() {
		return nil
	}
	if err := syscall.Kill(p.PID, syscall.SIGTERM); err != nil && !errors.Is(err, syscall.ESRCH) {
		return fmt.Errorf("stopping pid %d: %w", p.PID, err)
	}
	deadline := time.Now().Add(grace)
	for time.Now().Before(deadline) {
		if !p.Alive() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	if p.Alive() {
		_ = syscall.Kill(p.PID, syscall.SIGKILL)
	}
	for range 100 {
		if !p.Alive() {
			return nil
		}
		time.Sleep(20 * time.Millisecond)
	}
	return fmt.Errorf("pid %d (%s) did not end", p.PID, strings.Join(p.Args, " "))
}

// stopAll stops ps in parallel.
func stopAll(ps []*Proc, grace time.Duration) error {
	var wg sync.WaitGroup
	errs := make([]error, len(ps))
	for i, p := range ps {
		if p == nil {
			continue
		}
		wg.Go(func() { errs[i] = p.stop(grace) })
	}
	wg.Wait()
	return errors.Join(errs...)
}
