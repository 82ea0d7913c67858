package main

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/onairhq/onair/catalog"
	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/moderation"
)

// Bounds of the channel API's input.
const (
	maxTitleLength = 200 // characters
	maxEventsList  = 1000
)

// keyView is a stream key as the admin API lists it: never the key itself.
type keyView struct {
	ID      string    `json:"id"`
	Created time.Time `json:"created"`
}

// newKeyView is a key just made: the one answer that holds the key.
type newKeyView struct {
	keyView
	Key string `json:"key"`
}

func viewKey(k catalog.Key) keyView { return keyView{ID: k.ID, Created: k.Created} }

// createChannel makes a channel with one stream key, shown once in the answer.
func (a *app) createChannel(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Name  string `json:"name"`
		Title string `json:"title"`
	}
	if err := decodeBody(w, r, &body, `{"name": "...", "title": "..."}`); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	switch {
	case !ingest.ValidChannelName(body.Name):
		writeError(w, http.StatusBadRequest, "name must match [a-z0-9_-]{1,64}")
		return
	case a.configured(body.Name):
		writeError(w, http.StatusConflict, "channel "+body.Name+" is defined in the configuration")
		return
	}
	if err := checkText("title", body.Title, maxTitleLength); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if body.Title == "" {
		body.Title = body.Name
	}
	ch, key, err := a.catalog.Create(r.Context(), body.Name, body.Title)
	if err != nil {
		a.catalogError(w, err)
		return
	}
	a.channelsChanged(r.Context())
	a.log.Info("channel created through the API", "channel", ch.Name, "key_id", ch.Keys[0].ID)
	st, _ := a.hub.Channel(ch.Name)
	writeJSON(w, http.StatusCreated, map[string]any{
		"channel": a.view(st),
		"key":     newKeyView{viewKey(ch.Keys[0]), key},
	})
}

// updateChannel changes a channel's title.
func (a *app) updateChannel(w http.ResponseWriter, r *http.Request) {
	var body struct {
		Title *string `json:"title"`
	}
	if err := decodeBody(w, r, &body, `{"title": "..."}`); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if body.Title == nil {
		writeError(w, http.StatusBadRequest, `body must set "title"`)
		return
	}
	if err := checkText("title", *body.Title, maxTitleLength); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	name, ok := a.managed(w, r)
	if !ok {
		return
	}
	if _, err := a.catalog.SetTitle(r.Context(), name, *body.Title); err != nil {
		a.catalogError(w, err)
		return
	}
	a.channelsChanged(r.Context())
	a.getChannel(w, r)
}

// deleteChannel removes a channel: its broadcast ends and its keys stop working.
func (a *app) deleteChannel(w http.ResponseWriter, r *http.Request) {
	name, ok := a.managed(w, r)
	if !ok {
		return
	}
	if err := a.catalog.Delete(r.Context(), name); err != nil {
		a.catalogError(w, err)
		return
	}
	a.channelsChanged(r.Context())
	a.log.Info("channel deleted through the API", "channel", name)
	w.WriteHeader(http.StatusNoContent)
}

func (a *app) listKeys(w http.ResponseWriter, r *http.Request) {
	name, ok := a.managed(w, r)
	if !ok {
		return
	}
	ch, err := a.catalogChannel(r.Context(), name)
	if err != nil {
		a.catalogError(w, err)
		return
	}
	keys := []keyView{}
	for _, k := range ch.Keys {
		keys = append(keys, viewKey(k))
	}
	writeJSON(w, http.StatusOK, map[string]any{"keys": keys})
}

// addKey gives a channel one more key (several publishers' setups, or a
// rotation without a gap: add, switch OBS over, revoke the old one).
func (a *app) addKey(w http.ResponseWriter, r *http.Request) {
	name, ok := a.managed(w, r)
	if !ok {
		return
	}
	k, secret, err := a.catalog.AddKey(r.Context(), name)
	if err != nil {
		a.catalogError(w, err)
		return
	}
	a.channelsChanged(r.Context())
	a.log.Info("stream key added through the API", "channel", name, "key_id", k.ID)
	writeJSON(w, http.StatusCreated, newKeyView{viewKey(k), secret})
}

// rotateKey replaces a key: the old one is refused from the next publish on;
// a broadcast going on with it goes on.
func (a *app) rotateKey(w http.ResponseWriter, r *http.Request) {
	name, ok := a.managed(w, r)
	if !ok {
		return
	}
	k, secret, err := a.catalog.RotateKey(r.Context(), name, r.PathValue("id"))
	if err != nil {
		a.catalogError(w, err)
		return
	}
	a.channelsChanged(r.Context())
	a.log.Info("stream key rotated through the API", "channel", name, "old_key_id", r.PathValue("id"), "key_id", k.ID)
	writeJSON(w, http.StatusCreated, newKeyView{viewKey(k), secret})
}

func (a *app) revokeKey(w http.ResponseWriter, r *http.Request) {
	name, ok := a.managed(w, r)
	if !ok {
		return
	}
	if err := a.catalog.RevokeKey(r.Context(), name, r.PathValue("id")); err != nil {
		a.catalogError(w, err)
		return
	}
	a.channelsChanged(r.Context())
	a.log.Info("stream key revoked through the API", "channel", name, "key_id", r.PathValue("id"))
	w.WriteHeader(http.StatusNoContent)
}

// kick disconnects the publisher; the broadcast waits out its grace period.
func (a *app) kick(w http.ResponseWriter, r *http.Request) {
	a.hubAction(w, r, func(name string) error { return a.hub.Kick(name, "kicked by an administrator") })
}

// endBroadcast ends the live broadcast now, without a ban.
func (a *app) endBroadcast(w http.ResponseWriter, r *http.Request) {
	a.hubAction(w, r, func(name string) error { return a.hub.End(name, "ended by an administrator") })
}

// hubAction runs a publisher action where the channel is published and answers the channel.
func (a *app) hubAction(w http.ResponseWriter, r *http.Request, act func(name string) error) {
	name := r.PathValue("name")
	if err := decodeBody(w, r, &struct{}{}, "{}"); err != nil {
		writeError(w, http.StatusBadRequest, err.Error())
		return
	}
	if a.cluster != nil && a.cluster.forward(w, r, name, []byte("{}")) {
		return
	}
	switch err := act(name); {
	case errors.Is(err, ingest.ErrNoChannel):
		writeError(w, http.StatusNotFound, "no such channel")
		return
	case errors.Is(err, ingest.ErrNotPublishing):
		writeError(w, http.StatusConflict, "channel "+name+" is not live")
		return
	case err != nil:
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	a.log.Info("publisher action through the API", "channel", name, "action", r.URL.Path)
	a.getChannel(w, r)
}

// listEvents lists moderation verdicts and takedowns, newest first (with
// Redis, every node's; else this node's):
// ?channel=NAME for one channel, ?limit=N (default 100, at most 1000).
func (a *app) listEvents(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	channel := q.Get("channel")
	if channel != "" && !ingest.ValidChannelName(channel) {
		writeError(w, http.StatusBadRequest, "channel must match [a-z0-9_-]{1,64}")
		return
	}
	limit := 100
	if s := q.Get("limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > maxEventsList {
			writeError(w, http.StatusBadRequest, "limit must be a whole number from 1 to 1000")
			return
		}
		limit = n
	}
	var evs []moderation.Event
	if a.journal != nil {
		var err error
		if evs, err = a.journal.recent(r.Context(), channel, limit); err != nil {
			a.log.Warn("events listed from this node only", "err", err)
			evs = nil
		}
	}
	if evs == nil {
		evs = a.mod.Recent(channel, limit) // without Redis, or while it is unreachable
	}
	if evs == nil {
		evs = []moderation.Event{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"events": evs})
}

// managed checks that the request's channel is one the API manages,
// answering 404 or 409 when not.
func (a *app) managed(w http.ResponseWriter, r *http.Request) (string, bool) {
	name := r.PathValue("name")
	switch {
	case a.configured(name):
		writeError(w, http.StatusConflict, "channel "+name+" is defined in the configuration: change it there")
		return "", false
	case !ingest.ValidChannelName(name):
		writeError(w, http.StatusNotFound, "no such channel")
		return "", false
	}
	return name, true
}

func (a *app) catalogChannel(ctx context.Context, name string) (catalog.Channel, error) {
	all, err := a.catalog.Store.List(ctx)
	if err != nil {
		return catalog.Channel{}, err
	}
	for _, c := range all {
		if c.Name == name {
			return c, nil
		}
	}
	return catalog.Channel{}, catalog.ErrNoChannel
}

// catalogError answers a failed catalog change.
func (a *app) catalogError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, catalog.ErrNoChannel):
		writeError(w, http.StatusNotFound, "no such channel")
	case errors.Is(err, catalog.ErrNoKey):
		writeError(w, http.StatusNotFound, "no such key")
	case errors.Is(err, catalog.ErrExists), errors.Is(err, catalog.ErrLastKey), errors.Is(err, catalog.ErrTooManyKeys):
		writeError(w, http.StatusConflict, err.Error())
	default:
		a.log.Error("channel catalog unavailable", "err", err)
		writeError(w, http.StatusServiceUnavailable, "the channel catalog cannot be changed right now; try again")
	}
}
