package lab

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"time"

	"github.com/tabbynet/tabby/internal/netns"
)

// Relay accepts connections on ln (in the calling process's namespace)
// and connects each to target from inside the namespace at nsPath,
// copying bytes both ways, until ctx ends. It lets the CLI on the machine
// reach the lab's datastore, which lives in the fabric namespace.
func Relay(ctx context.Context, ln net.Listener, nsPath, target string, log *slog.Logger) error {
	ns, err := netns.Open(nsPath)
	if err != nil {
		return err
	}
	defer ns.Close()
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	var wg sync.WaitGroup
	defer wg.Wait()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		wg.Go(func() {
			defer c.Close()
			var up net.Conn
			// The socket is created inside the namespace and keeps it.
			err := ns.Do(func() error {
				var err error
				up, err = net.DialTimeout("tcp", target, 5*time.Second)
				return err
			})
			if err != nil {
				log.Warn("relay: dialing the datastore", "target", target, "err", err)
				return
			}
			defer up.Close()
			done := make(chan struct{}, 2)
			go func() { _, _ = io.Copy(up, c); up.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			go func() { _, _ = io.Copy(c, up); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
			select {
			case <-done:
				<-done
			case <-ctx.Done():
			}
		})
	}
}
