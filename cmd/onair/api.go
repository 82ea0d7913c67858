package main

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"time"

	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/moderation"
)

// channelView is a channel as the public API shows it. It never holds a key.
type channelView struct {
	Name      string     `json:"name"`
	Title     string     `json:"title"`
	Live      bool       `json:"live"`
	State     string     `json:"state"` // live, reconnecting, offline, taken_down
	Reason    string     `json:"reason,omitempty"`
	BanUntil  *time.Time `json:"ban_until,omitempty"`
	Since     *time.Time `json:"since,omitempty"`
	Viewers   int        `json:"viewers"`
	Codecs    []string   `json:"codecs"`
	Width     int        `json:"width,omitempty"`
	Height    int        `json:"height,omitempty"`
	Bitrate   int64      `json:"bitrate"`
	HLS       string     `json:"hls"`
	Watch     string     `json:"watch"`
	Thumbnail string     `json:"thumbnail"`
	Flags     int        `json:"moderation_flags"`
}

// access says who may call an API route.
type access int

const (
	public access = iota
	adminOnly
	streamer // the admin token or a moderator token of the channel; the handler checks
)

// apiRoute is one route of the API; docs/openapi.yaml describes each (a test checks).
type apiRoute struct {
	method, path string
	access       access
	handle       http.HandlerFunc
}

// apiRoutes is the whole API.
func (a *app) apiRoutes() []apiRoute {
	return []apiRoute{
		{"GET", "/api/v1/channels", public, a.listChannels},
		{"POST", "/api/v1/channels", adminOnly, a.createChannel},
		{"GET", "/api/v1/channels/{name}", public, a.getChannel},
		{"PATCH", "/api/v1/channels/{name}", adminOnly, a.updateChannel},
		{"DELETE", "/api/v1/channels/{name}", adminOnly, a.deleteChannel},
		{"GET", "/api/v1/channels/{name}/thumbnail.jpg", public, a.thumbnail},
		{"GET", "/api/v1/channels/{name}/moderation", adminOnly, a.moderationStatus},
		{"GET", "/api/v1/channels/{name}/health", streamer, a.channelHealth}, // health.go
		{"GET", "/api/v1/channels/{name}/keys", adminOnly, a.listKeys},
		{"POST", "/api/v1/channels/{name}/keys", adminOnly, a.addKey},
		{"POST", "/api/v1/channels/{name}/keys/{id}/rotate", adminOnly, a.rotateKey},
		{"DELETE", "/api/v1/channels/{name}/keys/{id}", adminOnly, a.revokeKey},
		{"POST", "/api/v1/channels/{name}/kick", adminOnly, a.kick},
		{"POST", "/api/v1/channels/{name}/end", adminOnly, a.endBroadcast},
		{"POST", "/api/v1/channels/{name}/takedown", adminOnly, a.takeDown},
		{"POST", "/api/v1/channels/{name}/unban", adminOnly, a.unban},
		{"GET", "/api/v1/channels/{name}/recordings", public, a.listRecordings}, // recordings.go
		{"DELETE", "/api/v1/channels/{name}/recordings/{id}", adminOnly, a.deleteRecording},
		{"GET", "/api/v1/events", adminOnly, a.listEvents},
	}
}

func (a *app) api() http.Handler {
	mux := http.NewServeMux()
	for _, rt := range a.apiRoutes() {
		h := rt.handle
		if rt.access == adminOnly {
			h = a.admin(h)
		}
		mux.HandleFunc(rt.method+" "+rt.path, h)
	}
	mux.HandleFunc("/api/v1/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such API endpoint")
	})
	return mux
}

func (a *app) view(s ingest.ChannelStatus) channelView {
	v := channelView{
		Name:      s.Name,
		Title:     a.title(s.Name),
		Live:      s.Live,
		State:     "offline",
		Viewers:   a.chat.ViewerCount(s.Name),
		Codecs:    []string{},
		Bitrate:   s.Bitrate,
		HLS:       "/hls/" + s.Name + "/index.m3u8",
		Watch:     "/watch/" + s.Name,
		Thumbnail: "/api/v1/channels/" + s.Name + "/thumbnail.jpg",
	}
	ms := a.mod.Status(s.Name)
	for _, e := range ms.Events {
		if e.Action == moderation.Flag && e.BroadcastID == s.BroadcastID {
			v.Flags++
		}
	}
	if s.Live {
		v.State = "live"
		if !s.PublisherConnected {
			v.State = "reconnecting"
		}
		since := s.Since
		v.Since = &since
		if t := s.Video; t != nil {
			v.Codecs = append(v.Codecs, string(t.Codec))
			v.Width, v.Height = t.Width, t.Height
		}
		if t := s.Audio; t != nil {
			v.Codecs = append(v.Codecs, string(t.Codec))
		}
	}
	if !s.BannedUntil.IsZero() && time.Now().Before(s.BannedUntil) {
		v.State, v.Reason = "taken_down", s.BanReason
		until := s.BannedUntil
		v.BanUntil = &until
	}
	return v
}

func (a *app) listChannels(w http.ResponseWriter, r *http.Request) {
	views := []channelView{}
	for _, s := range a.channelStatuses() {
		views = append(views, a.view(s))
	}
	writeJSON(w, http.StatusOK, map[string]any{"channels": views})
}

func (a *app) getChannel(w http.ResponseWriter, r *http.Request) {
	s, ok := a.channelStatus(r.PathValue("name"))
	if !ok {
		writeError(w, http.StatusNotFound, "no such channel")
		return
	}
	writeJSON(w, http.StatusOK, a.view(s))
}

// channelStatuses is every channel's state, on every node.
func (a *app) channelStatuses() []ingest.ChannelStatus {
	if a.cluster == nil {
		return a.hub.Channels()
	}
	return a.cluster.channels(a.hub.Channels())
}

// channelStatus is one channel's state, wherever it is published.
func (a *app) channelStatus(name string) (ingest.ChannelStatus, bool) {
	for _, st := range a.channelStatuses() {
		if st.Name == name {
			return st, true
		}
	}
	return ingest.ChannelStatus{}, false
}

// admin guards an action with the admin bearer token.
func (a *app) admin(next http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if !a.isAdmin(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="onair"`)
			writeError(w, http.StatusUnauthorized, "admin bearer token required")
			return
		}
		next(w, r)
	}
}

// isAdmin reports whether r carries the admin bearer token (compared in constant time).
func (a *app) isAdmin(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	return ok && subtle.ConstantTimeCompare([]byte(tok), []byte(a.adminToken)) == 1
}

func (a *app) takeDown(w http.ResponseWriter, r *http.Request) {
	req, err := decodeTakedown(w, r)
	if err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	name := r.PathValue("name")
	if a.cluster != nil {
		body, _ := json.Marshal(map[string]any{"reason": req.reason, "ban_seconds": int64(req.ban / time.Second)})
		if a.cluster.forward(w, r, name, body) {
			a.log.Info("takedown passed to the node publishing the channel", "channel", name)
			return
		}
	}
	if err := a.TakeDown(name, req.reason, req.ban); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	a.mod.Record(moderation.Event{Channel: name, Action: moderation.Block, Reason: req.reason, Screener: "admin", Ban: req.ban})
	a.log.Warn("channel taken down by admin", "channel", name, "reason", req.reason, "ban", req.ban)
	a.getChannel(w, r)
}

// thumbnail answers a channel's thumbnail, from the node publishing it.
func (a *app) thumbnail(w http.ResponseWriter, r *http.Request) {
	if a.cluster != nil && a.cluster.forward(w, r, r.PathValue("name"), nil) {
		return
	}
	a.thumbnails.ServeHTTP(w, r)
}

// moderationStatus shows a channel's screening state and recent verdicts, reasons included.
func (a *app) moderationStatus(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if a.cluster != nil && a.cluster.forward(w, r, name, nil) {
		return // screened where it is published
	}
	if _, ok := a.hub.Channel(name); !ok {
		writeError(w, http.StatusNotFound, "no such channel")
		return
	}
	writeJSON(w, http.StatusOK, a.mod.Status(name))
}

func (a *app) unban(w http.ResponseWriter, r *http.Request) {
	if err := a.hub.Unban(r.PathValue("name")); err != nil {
		writeError(w, http.StatusNotFound, err.Error())
		return
	}
	a.getChannel(w, r)
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-cache")
	w.Header().Set("Access-Control-Allow-Origin", "*")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, map[string]string{"error": msg})
}
