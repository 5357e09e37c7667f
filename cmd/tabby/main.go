// Command tabby is Tabby's one binary: the CLI (apply, get, delete, …), the
// embedded datastore (tabby datastore run) and, in later modes, the node
// agent and the CNI plugins.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=…".
var version = "dev"

func main() { os.Exit(run(os.Args, os.Stdin, os.Stdout, os.Stderr)) }

// run executes the command line args and returns the exit status. As a
// CNI plugin (see cniPlugin) it uses the process's standard streams.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if plugin, ok := cniPlugin(args, os.Getenv); ok {
		return plugin(version)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	root := newRootCommand(&streams{in: stdin, out: stdout, err: stderr})
	root.SetArgs(args[1:])
	if err := root.ExecuteContext(ctx); err != nil {
		var ee exitError
		if errors.As(err, &ee) {
			return ee.code
		}
		for _, line := range strings.Split(err.Error(), "\n") {
			fmt.Fprintf(stderr, "error: %s\n", line)
		}
		return 1
	}
	return 0
}

// exitError ends the command with a status and no further message; the
// command has already printed what went wrong.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

// streams are the command's standard input, output and error.
type streams struct {
	in       io.Reader
	out, err io.Writer
}
