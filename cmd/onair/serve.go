package main

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/internal/certfile"
)

// serve runs every role of onair in one process until ctx is done.
func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	cfg, err := loadConfig(fs, args, envLookup)
	if err != nil {
		return err
	}
	log := newLogger(stderr, cfg.LogLevel, cfg.LogFormat)
	warnSecretFlags(fs, cfg, log)
	applyGCSettings(cfg)

	st, newKey, err := openState(cfg.DataDir)
	if err != nil {
		return err
	}
	secret, adminToken := firstSet(cfg.Secret, st.Secret), firstSet(cfg.AdminToken, st.AdminToken)
	names, keys, _ := cfg.channelKeys() // validated in loadConfig
	configured := channelConfigs(names, keys)
	generated := len(names) == 0
	var seed *ingest.ChannelConfig
	if generated {
		names = []string{st.DefaultChannel}
		keys = map[string][]string{st.DefaultChannel: {st.DefaultKey}}
		seed = &ingest.ChannelConfig{Name: st.DefaultChannel, Keys: []string{st.DefaultKey}}
	}

	rs, _ := parseRoles(cfg.Roles) // validated in loadConfig
	var rtmpLn, rtmpsLn net.Listener
	closeIngest := func() { closeListener(rtmpLn); closeListener(rtmpsLn) }
	if rs.has(roleIngest) {
		if rtmpLn, err = net.Listen("tcp", cfg.RTMPAddr); err != nil {
			return fmt.Errorf("listen for RTMP on %s (rtmp-addr): %w", cfg.RTMPAddr, err)
		}
		if cfg.RTMPSAddr != "" {
			if rtmpsLn, err = net.Listen("tcp", cfg.RTMPSAddr); err != nil {
				closeIngest()
				return fmt.Errorf("listen for RTMPS on %s (rtmps-addr): %w", cfg.RTMPSAddr, err)
			}
		}
	}
	httpLn, err := net.Listen("tcp", cfg.HTTPAddr)
	if err != nil {
		closeIngest()
		return fmt.Errorf("listen for HTTP on %s (http-addr): %w", cfg.HTTPAddr, err)
	}
	nodeAddr := cfg.NodeAddr
	if nodeAddr == "" {
		nodeAddr = defaultNodeAddr(httpLn.Addr())
	}
	app, err := newApp(cfg, secret, adminToken, configured, seed, nodeAddr, log)
	if err != nil {
		closeIngest()
		httpLn.Close()
		return err
	}

	// SIGHUP reloads the channel list and keys from the configuration.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	printBanner(stdout, cfg, rs, rtmpLn, rtmpsLn, httpLn.Addr(), names, keys, generated, newKey)
	startAttrs := []any{"version", buildVersion(), "roles", rs.String()}
	if rtmpLn != nil {
		startAttrs = append(startAttrs, "rtmp", rtmpLn.Addr().String())
	}
	startAttrs = append(startAttrs, "http", httpLn.Addr().String(),
		"hls_variant", cfg.HLSVariant, "chat_bus", app.busName, "channels", len(names))
	if app.cluster != nil {
		startAttrs = append(startAttrs, "node", app.node, "node_addr", nodeAddr)
	}
	if rtmpsLn != nil {
		startAttrs = append(startAttrs, "rtmps", rtmpsLn.Addr().String())
	}
	log.Info("onair started", startAttrs...)

	httpSrv := newHTTPServer(cfg, guard(app.routes(), &app.http, log), log)
	httpLn = newConnLimitListener(httpLn, cfg.HTTPMaxConns, &app.http, log)
	var wg sync.WaitGroup
	errc := make(chan error, 3)
	var dbgSrv *http.Server
	if cfg.DebugAddr != "" {
		dbgLn, err := net.Listen("tcp", cfg.DebugAddr)
		if err != nil {
			closeIngest()
			httpLn.Close()
			return fmt.Errorf("listen for debugging on %s (debug-addr): %w", cfg.DebugAddr, err)
		}
		dbgSrv = &http.Server{Handler: debugHandler(), ReadHeaderTimeout: 10 * time.Second}
		log.Info("profiling endpoints listening", "addr", dbgLn.Addr().String())
		wg.Go(func() { _ = dbgSrv.Serve(dbgLn) })
	}
	if rtmpLn != nil {
		wg.Go(func() {
			if err := app.hub.Serve(ctx, rtmpLn); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("RTMP server: %w", err)
			}
		})
		if app.cluster != nil {
			wg.Go(func() { app.cluster.reg.Run(ctx) })
		}
	}
	certCtx, stopCerts := context.WithCancel(ctx)
	defer stopCerts()
	if rtmpsLn != nil {
		tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12, GetCertificate: app.certs.GetCertificate}
		wg.Go(func() {
			if err := app.hub.ServeTLS(ctx, rtmpsLn, tlsCfg); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("RTMPS server: %w", err)
			}
		})
		wg.Go(func() { app.certs.Run(certCtx, certfile.DefaultInterval) })
	}
	if app.cluster != nil && app.cluster.relay != nil {
		wg.Go(func() { app.cluster.reg.WatchTakedowns(ctx, app.cluster.relay.Drop) })
	}
	wg.Go(func() {
		if err := httpSrv.Serve(httpLn); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- fmt.Errorf("HTTP server: %w", err)
		}
	})

	var runErr error
run:
	for {
		select {
		case <-ctx.Done():
			log.Info("shutting down")
			break run
		case runErr = <-errc:
			log.Error("stopping", "err", runErr)
			break run
		case <-hup:
			reloadChannels(args, app, log)
			if app.certs != nil {
				reloadCertificate(app.certs, log)
			}
		}
	}

	stopServing(app, []net.Listener{rtmpLn, rtmpsLn}, httpSrv, cfg.ShutdownDrain, log)
	stopCerts()
	if dbgSrv != nil {
		dbgSrv.Close()
	}
	app.close()
	wg.Wait()
	log.Info("stopped")
	return runErr
}

// loadCertificate loads RTMPS's certificate. An error names the setting at
// fault.
func loadCertificate(cfg Config, log *slog.Logger) (*certfile.Pair, error) {
	certs, err := certfile.Load(cfg.TLSCert, cfg.TLSKey, log.With("part", "tls"))
	if err != nil {
		key := "tls-cert"
		if fe := (*certfile.Error)(nil); errors.As(err, &fe) && fe.File == "key" {
			key = "tls-key"
		}
		return nil, fmt.Errorf("invalid setting %s: %w", key, err)
	}
	log.Info("TLS certificate loaded for RTMPS", append(certs.Describe(), "part", "tls")...)
	return certs, nil
}

// reloadCertificate re-reads RTMPS's certificate files on SIGHUP (they are
// also reloaded by themselves within seconds of a change).
func reloadCertificate(certs *certfile.Pair, log *slog.Logger) {
	changed, err := certs.Reload() // a new certificate, or refused files, are logged by certs
	if err == nil {
		log.Info("TLS certificate files reread on SIGHUP", append([]any{"part", "tls", "changed", changed}, certs.Describe()...)...)
	}
}

// applyGCSettings tunes the Go runtime's collector. onair's heap is mostly
// the media of each playlist's window in pointer-free buffers, which the
// collector does not scan, so collecting often costs little: at the default
// of 10 % a stream holds about 1.3 × its window in RSS for ~8 % more CPU
// than at 50 % (docs/benchmarks.md).
func applyGCSettings(cfg Config) {
	if cfg.GCPercent > 0 {
		debug.SetGCPercent(cfg.GCPercent)
	}
	if cfg.MemoryLimitMiB > 0 {
		debug.SetMemoryLimit(int64(cfg.MemoryLimitMiB) << 20)
	}
}

// debugHandler serves Go's runtime profiles (net/http/pprof) on their usual
// paths, on a listener of its own so they never reach the public mux.
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	return mux
}

// closeListener closes ln, if there is one.
func closeListener(ln net.Listener) {
	if ln != nil {
		ln.Close()
	}
}

func firstSet(vals ...string) string {
	for _, v := range vals {
		if v != "" {
			return v
		}
	}
	return ""
}

// printBanner tells a new user, on stdout, everything needed to go live and watch.
// A generated stream key is shown once, when it was just made; later starts say
// where it is kept, so that it does not end up in every log of the service.
func printBanner(w io.Writer, cfg Config, rs roles, rtmpLn, rtmpsLn net.Listener, httpAddr net.Addr, names []string, keys map[string][]string, generated, newKey bool) {
	base := strings.TrimSuffix(cfg.PublicURL, "/")
	host := "localhost"
	if base == "" {
		base = "http://" + hostPort(host, httpAddr)
	} else if i := strings.Index(base, "://"); i >= 0 {
		host, _, _ = strings.Cut(base[i+3:], "/")
		if h, _, err := net.SplitHostPort(host); err == nil {
			host = h
		}
	}
	if rtmpLn == nil {
		fmt.Fprintf(w, "\nonair %s is serving as %s (no RTMP on this node).\n\n", buildVersion(), rs)
		if rs.has(roleWeb) {
			fmt.Fprintf(w, "  Directory:       %s/\n\n", base)
		}
		return
	}
	rtmpAddr := rtmpLn.Addr()
	fmt.Fprintf(w, "\nonair %s is live-ready.\n\n", buildVersion())
	fmt.Fprintf(w, "  OBS → Settings → Stream → Service: Custom\n")
	fmt.Fprintf(w, "    Server:      rtmp://%s/%s\n", hostPort(host, rtmpAddr), cfg.App)
	if rtmpsLn != nil {
		fmt.Fprintf(w, "    Server (TLS): rtmps://%s/%s\n", hostPort(host, rtmpsLn.Addr()), cfg.App)
	}
	for _, name := range names {
		switch {
		case generated && newKey:
			fmt.Fprintf(w, "    Stream Key:  %s   (channel %q; generated now and shown this once; kept in %s)\n", keys[name][0], name, filepath.Join(cfg.DataDir, stateFile))
		case generated:
			fmt.Fprintf(w, "    Stream Key:  kept in %s; show it with: onair key show --data-dir %s\n", filepath.Join(cfg.DataDir, stateFile), cfg.DataDir)
		default:
			fmt.Fprintf(w, "    Stream Key:  (as configured for channel %q)\n", name)
		}
	}
	fmt.Fprintf(w, "  OBS → Settings → Output: keyframe interval 1 s (2 s at most)\n\n")
	for _, name := range names {
		fmt.Fprintf(w, "  Watch %-10s %s/watch/%s\n", name+":", base, name)
		fmt.Fprintf(w, "  HLS   %-10s %s/hls/%s/index.m3u8\n", name+":", base, name)
	}
	fmt.Fprintf(w, "  Directory:       %s/\n\n", base)
}

func hostPort(host string, addr net.Addr) string {
	_, port, err := net.SplitHostPort(addr.String())
	if err != nil {
		return addr.String()
	}
	return net.JoinHostPort(host, port)
}
