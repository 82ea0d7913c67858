package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"runtime/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/redis/go-redis/v9"

	"github.com/onairhq/onair/chat"
)

// serve runs one chat node on 127.0.0.1 until its stdin closes. It prints "ADDR host:port".
func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ExitOnError)
	redisURL := fs.String("redis", "", "Redis URL (empty: in-memory bus)")
	nodeID := fs.String("node", "bench", "node id")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of this node here")
	fs.Parse(args)
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		pprof.StartCPUProfile(f)
		defer pprof.StopCPUProfile()
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	redis.SetLogger(chat.QuietRedisLogger{})
	o := chat.DefaultOptions()
	o.ConnsPerIP = 1000000 // every bench client comes from 127.0.0.1
	o.UpgradesPerMinute = 1000000
	o.Secret = []byte(benchSecret)
	o.Logger = log
	if *redisURL != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		bus, err := chat.NewRedisBus(ctx, *redisURL, *nodeID, log, chat.RedisOptions{})
		cancel()
		if err != nil {
			return err
		}
		defer bus.Close()
		o.Bus = bus
	}
	srv, err := chat.NewServer(o)
	if err != nil {
		return err
	}
	mux := http.NewServeMux()
	mux.Handle("/chat/{channel}", srv)
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv)
	mux.Handle("/metrics", promhttp.HandlerFor(reg, promhttp.HandlerOpts{}))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("listening: %w", err)
	}
	hs := &http.Server{Handler: mux}
	go hs.Serve(ln)
	fmt.Printf("ADDR %s\n", ln.Addr())
	// The parent closes our stdin to stop us.
	bufio.NewReader(os.Stdin).ReadString('\n')
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	srv.Shutdown(ctx)
	return hs.Shutdown(ctx)
}
