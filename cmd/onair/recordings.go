package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/onairhq/onair/recording"
)

// recordingOptions maps the record-* settings onto recording.Options.
func recordingOptions(cfg Config, onHide func(string, []string), log *slog.Logger) recording.Options {
	all, names := false, map[string]bool{}
	for _, n := range strings.Split(cfg.Record, ",") {
		switch n = strings.TrimSpace(n); n {
		case "":
		case "all":
			all = true
		default:
			names[n] = true
		}
	}
	return recording.Options{
		Dir:      filepath.Join(cfg.DataDir, "recordings"),
		Record:   func(channel string) bool { return all || names[channel] },
		MaxAge:   cfg.RecordMaxAge,
		MaxBytes: int64(cfg.RecordMaxMB) << 20,
		Takedown: cfg.RecordTakedown,
		OnHide:   onHide,
		Logger:   log,
	}
}

// recordingView is a recording as the API lists it.
type recordingView struct {
	ID        string    `json:"id"`
	Channel   string    `json:"channel"`
	Start     time.Time `json:"start"`
	Duration  float64   `json:"duration"` // seconds
	Size      int64     `json:"size"`     // bytes
	State     string    `json:"state"`    // recording, complete, hidden (admins only)
	Stopped   string    `json:"stopped,omitempty"`
	Playlist  string    `json:"playlist"`
	Watch     string    `json:"watch"`
	Thumbnail string    `json:"thumbnail,omitempty"` // a picture from its first seconds, if one could be made
}

func viewRecording(m recording.Meta) recordingView {
	base := "/vod/" + m.Channel + "/" + m.ID + "/"
	v := recordingView{ID: m.ID, Channel: m.Channel, Start: m.Started, Duration: m.Duration.Seconds(), Size: m.Size,
		State: string(m.State), Stopped: m.Stopped, Playlist: base + "index.m3u8", Watch: "/replay/" + m.Channel + "/" + m.ID}
	if m.Thumbnail {
		v.Thumbnail = base + "thumbnail.jpg"
	}
	return v
}

// listRecordings lists a channel's replays, newest first; with the admin
// token, hidden (taken-down) ones too.
func (a *app) listRecordings(w http.ResponseWriter, r *http.Request) {
	name := r.PathValue("name")
	if _, ok := a.channelStatus(name); !ok {
		writeError(w, http.StatusNotFound, "no such channel")
		return
	}
	views := []recordingView{}
	for _, m := range a.rec.List(name, a.isAdmin(r)) {
		views = append(views, viewRecording(m))
	}
	writeJSON(w, http.StatusOK, map[string]any{"recordings": views})
}

// deleteRecording removes a recording (not the one being recorded).
func (a *app) deleteRecording(w http.ResponseWriter, r *http.Request) {
	switch err := a.rec.Delete(r.PathValue("name"), r.PathValue("id")); {
	case errors.Is(err, recording.ErrNotFound):
		writeError(w, http.StatusNotFound, "no such recording")
	case errors.Is(err, recording.ErrLive):
		writeError(w, http.StatusConflict, err.Error())
	case err != nil:
		a.log.Error("recording not deleted", "err", err)
		writeError(w, http.StatusInternalServerError, "the recording could not be deleted")
	default:
		a.log.Info("recording deleted through the API", "channel", r.PathValue("name"), "recording", r.PathValue("id"))
		w.WriteHeader(http.StatusNoContent)
	}
}

// recordingCommand runs "onair recording export ID FILE.mp4".
func recordingCommand(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	const use = "usage: onair recording export ID FILE.mp4 [--data-dir DIR] [--ffmpeg PATH]"
	if len(args) == 0 || args[0] != "export" {
		return errors.New(use)
	}
	fs := flag.NewFlagSet("onair recording export", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", firstSet(envLookup("ONAIR_DATA_DIR"), defaultConfig().DataDir), "data directory of the server")
	ffmpeg := fs.String("ffmpeg", firstSet(envLookup("ONAIR_FFMPEG"), defaultConfig().FFmpegPath), "ffmpeg program")
	var pos []string
	for rest := args[1:]; ; {
		if err := fs.Parse(rest); err != nil {
			return err
		}
		if fs.NArg() == 0 {
			break
		}
		pos, rest = append(pos, fs.Arg(0)), fs.Args()[1:]
	}
	if len(pos) != 2 {
		return errors.New(use)
	}
	start := time.Now()
	m, err := recording.Export(ctx, filepath.Join(*dataDir, "recordings"), pos[0], pos[1], *ffmpeg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "exported %s (channel %s, %s, started %s) to %s in %s\n", m.ID, m.Channel,
		m.Duration.Round(time.Second), m.Started.Format(time.RFC3339), pos[1], time.Since(start).Round(time.Millisecond))
	return nil
}
