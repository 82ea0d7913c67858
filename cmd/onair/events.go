package main

import (
	"log/slog"
	"time"

	"github.com/onairhq/onair/events"
	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/moderation"
)

// eventsFlush is how long the events webhook may take, at exit, to take the
// events still queued (the hub's last publish_stopped among them). The
// shutdown drain comes before it, during which delivery goes on.
const eventsFlush = 500 * time.Millisecond

// validateEvents checks the events webhook settings (its URL is checked with the other URLs).
func (c *Config) validateEvents(bad func(key, format string, a ...any)) {
	if c.EventsWebhook != "" && c.EventsSecret == "" {
		bad("events-webhook-secret", "is required with events-webhook: events are signed")
	}
	if c.EventsQueue < 1 {
		bad("events-queue", "must be at least 1")
	}
	if c.EventsRetryMax < time.Second || c.EventsRetryMax > time.Hour {
		bad("events-retry-max", "must be between 1s and 1h")
	}
}

// eventsWebhook turns the hub's and moderation's events into events-webhook
// events. The hub calls it in order, off the media path; moderation calls
// flagged from its screening goroutines. Its methods do nothing on a nil
// *eventsWebhook (no events-webhook configured).
type eventsWebhook struct {
	n     *events.Notifier
	grace time.Duration
}

var (
	_ ingest.PublisherObserver = (*eventsWebhook)(nil)
	_ ingest.TakedownObserver  = (*eventsWebhook)(nil)
)

// newEventsWebhook starts delivering to events-webhook; nil without one.
func newEventsWebhook(cfg Config, log *slog.Logger) (*eventsWebhook, error) {
	if cfg.EventsWebhook == "" {
		return nil, nil
	}
	n, err := events.New(events.Options{
		URL:        cfg.EventsWebhook,
		Secret:     cfg.EventsSecret,
		QueueSize:  cfg.EventsQueue,
		BackoffMax: cfg.EventsRetryMax,
		Logger:     log,
	})
	if err != nil {
		return nil, err
	}
	return &eventsWebhook{n: n, grace: cfg.Grace}, nil
}

func (e *eventsWebhook) send(ev events.Event) {
	if e != nil {
		e.n.Send(ev)
	}
}

// BroadcastStarted implements ingest.Observer.
func (e *eventsWebhook) BroadcastStarted(b *ingest.Broadcast) {
	tr := &events.Tracks{}
	if v := b.Tracks.Video; v != nil {
		tr.Video = &events.VideoTrack{Codec: string(v.Codec), Width: v.Width, Height: v.Height}
	}
	if a := b.Tracks.Audio; a != nil {
		tr.Audio = &events.AudioTrack{Codec: string(a.Codec), SampleRate: a.SampleRate, Channels: a.Channels}
	}
	e.send(events.Event{Type: events.PublishStarted, Channel: b.Channel, BroadcastID: b.ID, Tracks: tr})
}

// BroadcastEnded implements ingest.Observer. A takedown's end is not sent:
// its taken_down event (TakenDown) says it, with the reason and the ban.
func (e *eventsWebhook) BroadcastEnded(b *ingest.Broadcast, reason ingest.EndReason, detail string) {
	if reason == ingest.EndTakenDown {
		return
	}
	e.send(events.Event{Type: events.PublishStopped, Channel: b.Channel, BroadcastID: b.ID,
		Reason: string(reason), Detail: detail, DurationSeconds: seconds(time.Since(b.Started))})
}

// PublisherLost implements ingest.PublisherObserver.
func (e *eventsWebhook) PublisherLost(b *ingest.Broadcast, detail string) {
	e.send(events.Event{Type: events.PublisherReconnecting, Channel: b.Channel, BroadcastID: b.ID,
		Detail: detail, GraceSeconds: seconds(e.grace)})
}

// PublisherReturned implements ingest.PublisherObserver.
func (e *eventsWebhook) PublisherReturned(b *ingest.Broadcast) {
	e.send(events.Event{Type: events.PublisherReturned, Channel: b.Channel, BroadcastID: b.ID})
}

// TakenDown implements ingest.TakedownObserver.
func (e *eventsWebhook) TakenDown(channel string, b *ingest.Broadcast, reason string, ban time.Duration) {
	ev := events.Event{Type: events.TakenDown, Channel: channel, Reason: reason, BanSeconds: seconds(ban)}
	ev.Time = time.Now().UTC()
	if b != nil {
		ev.BroadcastID, ev.DurationSeconds = b.ID, seconds(ev.Time.Sub(b.Started))
	}
	if ban > 0 {
		until := ev.Time.Add(ban)
		ev.BannedUntil = &until
	}
	e.send(ev)
}

// flagged is moderation's OnFlag.
func (e *eventsWebhook) flagged(m moderation.Event) {
	ev := events.Event{Type: events.ModerationFlag, Channel: m.Channel, BroadcastID: m.BroadcastID, Time: m.Time,
		Reason: m.Reason, Screener: m.Screener, Verdict: string(m.Action)}
	if m.Screener != "failure-policy" { // a flag about screening itself, not about a frame
		ft := m.KeyframeTime.Seconds()
		ev.FrameTime = &ft
	}
	e.send(ev)
}

// close gives the queued events eventsFlush to be delivered, then stops.
func (e *eventsWebhook) close() {
	if e != nil {
		e.n.Close(eventsFlush)
	}
}

// seconds is d in seconds, to the millisecond.
func seconds(d time.Duration) float64 { return d.Round(time.Millisecond).Seconds() }
