// Command onair is a self-hosted live-streaming server: RTMP in, low-latency HLS
// out, keyframe moderation, and a chat room per channel.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"strings"
	"syscall"
)

const usage = `onair — a self-hosted live-streaming server

Usage:
  onair serve [flags]                       run every role in one process
  onair version                             print the version
  onair key show [--data-dir DIR]           print the stream key generated at the first start
  onair token moderator --channel NAME      print a chat moderator token (valid 24 h; --ttl)
  onair token revoke TOKEN-OR-ID            revoke a moderator token
  onair moderation hash IMAGE...            print perceptual hashes for a blocklist
  onair config check FILE                   check a configuration file, naming every problem
  onair healthcheck [URL]                   exit 0 when the node's /readyz (or URL) answers 2xx within 2 s
  onair status [--url URL]                  one screen: channels, viewers, stream health (admin token)
  onair recording export ID FILE.mp4        write a recording as one MP4 (for download or upload)
  onair load publish|watch|input|channels   load-test a server (RTMP publishers, playlist watcher)

Run "onair serve -h" for every setting; each is also a YAML key and an ONAIR_* variable.
`

// version is set at build time with -ldflags "-X main.version=...".
var version = ""

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	var err error
	switch args[0] {
	case "serve":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = serve(ctx, args[1:], stdout, stderr)
	case "version", "--version", "-version":
		fmt.Fprintln(stdout, "onair", buildVersion())
	case "key":
		err = keyCommand(args[1:], stdout, stderr)
	case "token":
		err = tokenCommand(args[1:], stdout, stderr)
	case "moderation":
		err = moderationCommand(args[1:], stdout)
	case "config":
		err = configCommand(args[1:], stdout)
	case "healthcheck":
		err = healthcheckCommand(args[1:], stdout)
	case "status":
		err = statusCommand(args[1:], stdout, stderr)
	case "recording":
		err = recordingCommand(context.Background(), args[1:], stdout, stderr)
	case "load":
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		defer stop()
		err = loadCommand(ctx, args[1:], stdout, stderr)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "onair: unknown command %q\n\n%s", args[0], usage)
		return 2
	}
	if errors.Is(err, flag.ErrHelp) {
		return 0
	}
	if err != nil {
		fmt.Fprintln(stderr, "onair:", err)
		return 1
	}
	return 0
}

func buildVersion() string {
	if version != "" {
		return version
	}
	if bi, ok := debug.ReadBuildInfo(); ok {
		v := bi.Main.Version
		for _, s := range bi.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				v += " " + s.Value[:12]
			}
		}
		return strings.TrimSpace(v)
	}
	return "dev"
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	var lv slog.Level
	lv.UnmarshalText([]byte(level)) // validated with the config
	opts := &slog.HandlerOptions{Level: lv}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
