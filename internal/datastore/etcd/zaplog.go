package etcd

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// newZapLogger returns a zap logger, as etcd's server and client want, that
// passes messages at min and above to log with component=etcd. While
// quiet (if not nil) is set, every message counts as debug: etcd logs its
// normal shutdown ("http: Server closed") as errors.
func newZapLogger(log *slog.Logger, min zapcore.Level, quiet *atomic.Bool) *zap.Logger {
	return zap.New(&slogCore{handler: log.Handler(), min: min, quiet: quiet}).With(zap.String("component", "etcd"))
}

// parseZapLevel parses "debug", "info", "warn" or "error".
func parseZapLevel(s string) (zapcore.Level, error) {
	switch strings.ToLower(s) {
	case "debug":
		return zapcore.DebugLevel, nil
	case "info":
		return zapcore.InfoLevel, nil
	case "warn":
		return zapcore.WarnLevel, nil
	case "error":
		return zapcore.ErrorLevel, nil
	}
	return 0, fmt.Errorf("%q is not debug, info, warn or error", s)
}

// slogCore is a zapcore.Core that writes to a slog.Handler.
type slogCore struct {
	handler slog.Handler
	min     zapcore.Level
	quiet   *atomic.Bool
	attrs   []slog.Attr
}

func (c *slogCore) Enabled(l zapcore.Level) bool {
	l = c.level(l)
	return l >= c.min && c.handler.Enabled(context.Background(), slogLevel(l))
}

// level is the level l is logged at.
func (c *slogCore) level(l zapcore.Level) zapcore.Level {
	if c.quiet != nil && c.quiet.Load() {
		return zapcore.DebugLevel
	}
	return l
}

func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	return &slogCore{handler: c.handler, min: c.min, quiet: c.quiet, attrs: append(slices.Clip(c.attrs), attrsOf(fields)...)}
}

func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(c.level(e.Level)), e.Message, 0)
	r.AddAttrs(c.attrs...)
	if e.LoggerName != "" {
		r.AddAttrs(slog.String("logger", e.LoggerName))
	}
	r.AddAttrs(attrsOf(fields)...)
	return c.handler.Handle(context.Background(), r)
}

func (c *slogCore) Sync() error { return nil }

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// attrsOf turns zap fields into slog attributes, sorted by key.
func attrsOf(fields []zapcore.Field) []slog.Attr {
	if len(fields) == 0 {
		return nil
	}
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range fields {
		f.AddTo(enc)
	}
	attrs := make([]slog.Attr, 0, len(enc.Fields))
	for k, v := range enc.Fields {
		attrs = append(attrs, slog.Any(k, v))
	}
	slices.SortFunc(attrs, func(a, b slog.Attr) int { return strings.Compare(a.Key, b.Key) })
	return attrs
}
