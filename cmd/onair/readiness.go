package main

import (
	"fmt"
	"net/http"
	"strings"
	"sync/atomic"
)

// readiness decides /readyz. A node is ready while it can do its work for the
// clients a load balancer sends it, and only a node that cannot (it is
// shutting down) answers 503. A dependency that is down degrades a role
// without making the node unready: with Redis unreachable, HLS and RTMP need
// nothing of it and chat still serves the node's own viewers, and since every
// node shares the one Redis, draining them all would turn a partial outage
// into a full one. Degraded roles are named in the body and in the
// onair_role_degraded metric, for alerting. docs/operator.md says what a load
// balancer should do with each answer.
type readiness struct {
	draining atomic.Bool // set when shutdown begins
	// hls, rtmp, chat: whether the node runs each (all, when none is set).
	hls, rtmp, chatRole bool
	// chat reports whether the chat bus reaches the other nodes (nil: it does).
	chat func() error
	// registry reports whether the registry of other nodes' channels is
	// reachable (nil: it is, or there is none).
	registry func() error
}

// roleState is one role's line in /readyz.
type roleState struct {
	role     string
	degraded string // why, or "" when the role works fully
}

func (rd *readiness) roles() []roleState {
	all := !rd.hls && !rd.rtmp && !rd.chatRole
	var out []roleState
	if all || rd.hls {
		st := roleState{role: "hls"}
		if rd.registry != nil {
			if err := rd.registry(); err != nil {
				st.degraded = err.Error() + "; channels published here are served, channels on other nodes are not"
			}
		}
		out = append(out, st)
	}
	if all || rd.rtmp {
		out = append(out, roleState{role: "rtmp"})
	}
	if all || rd.chatRole {
		st := roleState{role: "chat"}
		if rd.chat != nil {
			if err := rd.chat(); err != nil {
				st.degraded = err.Error() + "; local rooms work, messages do not reach viewers on other nodes"
			}
		}
		out = append(out, st)
	}
	return out
}

// ServeHTTP answers /readyz: 200 "ready" (maybe with degraded roles) or 503
// "shutting down".
func (rd *readiness) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if rd.draining.Load() {
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "not ready: shutting down")
		return
	}
	var b strings.Builder
	var degraded []string
	for _, st := range rd.roles() {
		if st.degraded == "" {
			fmt.Fprintf(&b, "%s: ok\n", st.role)
			continue
		}
		degraded = append(degraded, st.role)
		fmt.Fprintf(&b, "%s: degraded: %s\n", st.role, st.degraded)
	}
	if len(degraded) == 0 {
		fmt.Fprint(w, "ready\n", b.String())
		return
	}
	fmt.Fprintf(w, "ready (degraded: %s)\n%s", strings.Join(degraded, ", "), b.String())
}
