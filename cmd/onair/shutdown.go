package main

import (
	"context"
	"log/slog"
	"net"
	"net/http"
	"time"
)

const (
	// shutdownBudget is how long a graceful stop may take, from the signal to
	// the HTTP server closed; the rest of the exit takes well under a second,
	// so onair is gone within 10 s of SIGTERM.
	shutdownBudget = 9 * time.Second
	// maxShutdownDrain bounds shutdown-drain inside that budget.
	maxShutdownDrain     = 8 * time.Second
	defaultShutdownDrain = 2 * time.Second
)

// stopServing stops onair's servers in data-path order: /readyz fails (load
// balancers stop sending clients), RTMP and RTMPS stop accepting, every broadcast ends
// (playlists get EXT-X-ENDLIST and waiting playlist requests are answered),
// chat clients get a close frame, HTTP keeps answering for the drain so
// players read the end, then HTTP stops, cutting whatever is still open when
// the budget runs out.
func stopServing(a *app, ingestLns []net.Listener, httpSrv *http.Server, drain time.Duration, log *slog.Logger) {
	start := time.Now()
	ctx, cancel := context.WithDeadline(context.Background(), start.Add(shutdownBudget))
	defer cancel()
	a.ready.draining.Store(true)
	for _, ln := range ingestLns {
		closeListener(ln)
	}

	step := func(d time.Duration) (context.Context, context.CancelFunc) {
		return context.WithTimeout(ctx, d)
	}
	ictx, icancel := step(4 * time.Second)
	if err := a.hub.Shutdown(ictx); err != nil {
		log.Warn("ingest shutdown", "err", err)
	}
	icancel()
	cctx, ccancel := step(2 * time.Second)
	if err := a.chat.Shutdown(cctx); err != nil {
		log.Warn("chat shutdown", "err", err)
	}
	ccancel()

	// Leave a second of the budget for open requests to finish.
	if left := time.Until(start.Add(shutdownBudget - time.Second)); drain > left {
		drain = max(left, 0)
	}
	if drain > 0 {
		log.Info("broadcasts ended and chat closed; HTTP keeps answering for the drain", "drain", drain)
		time.Sleep(drain)
	}
	if err := httpSrv.Shutdown(ctx); err != nil {
		log.Warn("HTTP requests still open at the shutdown deadline were cut", "err", err)
		httpSrv.Close()
	}
	log.Info("servers stopped", "took", time.Since(start).Round(time.Millisecond))
}
