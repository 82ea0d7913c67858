package main

import (
	"errors"
	"net/http"
	"strings"

	"github.com/onairhq/onair/chat"
)

// channelHealth answers GET /api/v1/channels/{name}/health: the live
// broadcast's health report (health.Report), for the admin or a moderator of
// that channel. 401 without a good token, 403 for a moderator of another
// channel, 404 for an unknown channel, 409 when the channel is not live. With
// several nodes, the node publishing the channel answers.
func (a *app) channelHealth(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if status, msg := a.healthAuth(r, name); status != http.StatusOK {
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onair"`)
		}
		writeError(w, status, msg)
		return
	}
	if a.cluster != nil && a.cluster.forward(w, r, name, nil) {
		return // measured where it is published
	}
	if _, ok := a.channelStatus(name); !ok {
		writeError(w, http.StatusNotFound, "no such channel")
		return
	}
	rep, ok := a.health.Report(name)
	if !ok {
		writeError(w, http.StatusConflict, "channel is not live")
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

// healthAuth decides who may read a channel's health: the admin bearer token,
// or a moderator token of that channel (signature, expiry and revocation
// checked by chat). It returns 200 or the status and message to answer.
func (a *app) healthAuth(r *http.Request, channel string) (int, string) {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return http.StatusUnauthorized, "admin or moderator bearer token required"
	}
	if a.isAdmin(r) {
		return http.StatusOK, ""
	}
	if t, err := chat.ParseModeratorToken(tok); err == nil && t.Channel != channel {
		// A good token of another channel is forbidden here; a bad one is just bad.
		if a.chat.CheckModerator(t.Channel, tok) == nil {
			return http.StatusForbidden, "this moderator token is for another channel"
		}
		return http.StatusUnauthorized, "invalid bearer token"
	}
	switch err := a.chat.CheckModerator(channel, tok); {
	case err == nil:
		return http.StatusOK, ""
	case errors.Is(err, chat.ErrModeratorCheckUnavailable):
		return http.StatusServiceUnavailable, err.Error()
	default:
		return http.StatusUnauthorized, "invalid bearer token"
	}
}
