package recording

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/onairhq/onair/ingest"
)

// Takedown policies: what a taken-down broadcast's recording becomes.
const (
	TakedownHide   = "hide"   // kept for review, never served
	TakedownDelete = "delete" // removed at once
)

// Options configure a Recorder.
type Options struct {
	// Dir holds the recordings: Dir/CHANNEL/ID/.
	Dir string
	// Record says whether a channel's broadcasts are recorded.
	Record func(channel string) bool
	// MaxAge removes recordings older than this (0: no limit).
	MaxAge time.Duration
	// MaxBytes bounds each channel's recordings, the oldest going first (0: no limit).
	MaxBytes int64
	// Takedown is TakedownHide (default) or TakedownDelete.
	Takedown string
	// QueueBytes bounds what one recording may have waiting for the disk
	// before it stops (default 64 MiB).
	QueueBytes int64
	// OnHide, if set, is told the URL paths of a recording that stops being
	// served (a takedown), to purge them from CDN caches.
	OnHide func(channel string, paths []string)
	// Thumbnail, if set, returns a JPEG of the channel's picture now; a
	// recording asks for one once it has a few seconds, for its listing.
	Thumbnail func(ctx context.Context, channel string) ([]byte, bool)
	Logger    *slog.Logger
}

// Recorder records broadcasts and keeps the recordings within their limits.
type Recorder struct {
	opts    Options
	log     *slog.Logger
	metrics metrics

	mu     sync.Mutex
	active map[string]*Writer // by channel
	wg     sync.WaitGroup
	cancel context.CancelFunc
}

// New opens the recordings directory, finishes the recordings a crash
// interrupted, and starts the janitor that applies MaxAge.
func New(opts Options) (*Recorder, error) {
	if opts.QueueBytes <= 0 {
		opts.QueueBytes = 64 << 20
	}
	if opts.Takedown == "" {
		opts.Takedown = TakedownHide
	}
	if opts.Takedown != TakedownHide && opts.Takedown != TakedownDelete {
		return nil, fmt.Errorf("recording takedown policy %q: want %s or %s", opts.Takedown, TakedownHide, TakedownDelete)
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("create recordings directory: %w", err)
	}
	r := &Recorder{opts: opts, log: opts.Logger, active: map[string]*Writer{}}
	r.metrics.failures = map[string]uint64{}
	r.recoverAll()
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	r.wg.Go(func() { r.janitor(ctx) })
	return r, nil
}

// recoverAll finishes every recording left in state recording.
func (r *Recorder) recoverAll() {
	dirs, _ := filepath.Glob(filepath.Join(r.opts.Dir, "*", "*", metaFile))
	for _, mf := range dirs {
		dir := filepath.Dir(mf)
		m, err := readMeta(dir)
		if err != nil || m.State != StateRecording {
			continue
		}
		if m, err = recoverDir(dir, m); err != nil {
			r.log.Error("interrupted recording not recovered", "dir", dir, "err", err)
			continue
		}
		r.log.Warn("recording interrupted by a stop of onair, recovered", "channel", m.Channel, "recording", m.ID, "duration", m.Duration.Round(time.Second))
	}
}

// Close stops the janitor and waits for every recording being written to finish.
func (r *Recorder) Close() {
	r.cancel()
	r.mu.Lock()
	ws := make([]*Writer, 0, len(r.active))
	for _, w := range r.active {
		ws = append(ws, w)
	}
	r.mu.Unlock()
	for _, w := range ws {
		w.End(ingest.EndShutdown)
		<-w.done
	}
	r.wg.Wait()
}

// Start begins recording broadcast b, whose fMP4 init segment is init, or
// returns nil when its channel is not recorded or the recording cannot start.
func (r *Recorder) Start(b *ingest.Broadcast, init []byte) *Writer {
	if r.opts.Record == nil || !r.opts.Record(b.Channel) {
		return nil
	}
	m := Meta{ID: newID(b.Started, b.ID), Channel: b.Channel, BroadcastID: b.ID, Started: b.Started.UTC(), State: StateRecording}
	dir := filepath.Join(r.opts.Dir, b.Channel, m.ID)
	w := &Writer{r: r, dir: dir, meta: m, ops: make(chan op, 4096), endc: make(chan struct{}), done: make(chan struct{}), target: 1}
	if err := w.create(init); err != nil {
		reason := "write_error"
		if errors.Is(err, errNoSpace) {
			reason = "disk_full"
		}
		r.metrics.failed(reason)
		r.log.Error("recording not started; the live stream goes on", "channel", b.Channel, "broadcast", b.ID, "err", err)
		os.RemoveAll(dir)
		return nil
	}
	r.mu.Lock()
	r.active[b.Channel] = w
	r.mu.Unlock()
	r.metrics.started.Add(1)
	r.log.Info("recording", "channel", b.Channel, "recording", m.ID, "dir", dir)
	r.wg.Go(w.run)
	r.wg.Go(func() { r.enforce(b.Channel) }) // off the packager's goroutine: removing may take a while
	return w
}

// create makes the recording's directory and first files.
func (w *Writer) create(init []byte) error {
	if err := os.MkdirAll(w.dir, 0o755); err != nil {
		return noSpace(err)
	}
	if err := os.WriteFile(filepath.Join(w.dir, initFile), init, 0o644); err != nil {
		return noSpace(err)
	}
	var err error
	if w.log, err = os.OpenFile(filepath.Join(w.dir, partsLog), os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644); err != nil {
		return noSpace(err)
	}
	if err := w.rewriteList(false); err != nil {
		w.log.Close()
		return noSpace(err)
	}
	if err := writeMeta(w.dir, w.meta); err != nil {
		w.log.Close()
		w.list.Close()
		return noSpace(err)
	}
	return nil
}

var errNoSpace = errors.New("the disk is full")

func noSpace(err error) error {
	if errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) {
		return fmt.Errorf("%w: %v", errNoSpace, err)
	}
	return err
}

// finished is called by a Writer once its recording is final.
func (r *Recorder) finished(w *Writer) {
	r.mu.Lock()
	if r.active[w.meta.Channel] == w {
		delete(r.active, w.meta.Channel)
	}
	r.mu.Unlock()
	r.log.Info("recording ended", "channel", w.meta.Channel, "recording", w.meta.ID, "state", w.meta.State,
		"duration", w.meta.Duration.Round(time.Millisecond), "bytes", w.meta.Size)
	if w.meta.State == StateHidden {
		if r.opts.OnHide != nil {
			r.opts.OnHide(w.meta.Channel, recordingPaths(w.meta.Channel, w.meta.ID, w.meta.Segments))
		}
		if r.opts.Takedown == TakedownDelete {
			if err := os.RemoveAll(w.dir); err != nil {
				r.log.Error("taken-down recording not deleted", "recording", w.String(), "err", err)
			}
		}
	}
	r.enforce(w.meta.Channel)
}

// recordingPaths are the URL paths a recording is served at.
func recordingPaths(channel, id string, segments int) []string {
	base := "/vod/" + channel + "/" + id + "/"
	paths := []string{base + playlistFile, base + initFile, base + thumbnailFile}
	for i := range segments + 1 {
		paths = append(paths, base+segmentFile(i))
	}
	return paths
}

// List returns a channel's recordings, newest first; hidden ones only with all.
func (r *Recorder) List(channel string, all bool) []Meta {
	metas := r.read(channel)
	out := metas[:0]
	for _, m := range metas {
		if all || m.State != StateHidden {
			out = append(out, m)
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID > out[j].ID })
	return out
}

// read returns every recording of channel, the one being written with its current figures.
func (r *Recorder) read(channel string) []Meta {
	files, _ := filepath.Glob(filepath.Join(r.opts.Dir, channel, "*", metaFile))
	r.mu.Lock()
	live := r.active[channel]
	r.mu.Unlock()
	var out []Meta
	for _, f := range files {
		m, err := readMeta(filepath.Dir(f))
		if err != nil {
			continue
		}
		if live != nil && live.meta.ID == m.ID && live.hidden.Load() {
			m.State = StateHidden
		}
		out = append(out, m)
	}
	return out
}

// Get returns one recording, hidden ones included.
func (r *Recorder) Get(channel, id string) (Meta, error) {
	if !ingest.ValidChannelName(channel) || !ValidID(id) {
		return Meta{}, ErrNotFound
	}
	// The writer first: one that finishes after this look has written its
	// final description (hidden, if taken down) before it leaves r.active.
	r.mu.Lock()
	live := r.active[channel]
	r.mu.Unlock()
	m, err := readMeta(filepath.Join(r.opts.Dir, channel, id))
	if err != nil || m.ID != id || m.Channel != channel {
		return Meta{}, ErrNotFound
	}
	if live != nil && live.meta.ID == id && live.hidden.Load() {
		m.State = StateHidden // taken down while its last part is still being written
	}
	return m, nil
}

// Delete removes a recording; the one being written cannot be.
func (r *Recorder) Delete(channel, id string) error {
	if _, err := r.Get(channel, id); err != nil {
		return err
	}
	r.mu.Lock()
	live := r.active[channel]
	r.mu.Unlock()
	if live != nil && live.meta.ID == id {
		return ErrLive
	}
	if err := os.RemoveAll(filepath.Join(r.opts.Dir, channel, id)); err != nil {
		return fmt.Errorf("delete recording %s/%s: %w", channel, id, err)
	}
	r.metrics.removed.Add(1)
	if r.opts.OnHide != nil {
		r.opts.OnHide(channel, recordingPaths(channel, id, 0))
	}
	return nil
}

// thumbnail saves a picture of the broadcast for the recording's listing,
// off the writing goroutine (a decode may take a second).
func (r *Recorder) thumbnail(w *Writer) {
	if r.opts.Thumbnail == nil {
		return
	}
	r.wg.Go(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		img, ok := r.opts.Thumbnail(ctx, w.meta.Channel)
		if !ok {
			return
		}
		if err := writeFileAtomic(filepath.Join(w.dir, thumbnailFile), img); err != nil {
			r.log.Warn("recording's thumbnail not saved", "recording", w.String(), "err", err)
		}
	})
}

// ErrLive is returned for deleting the recording of a live broadcast.
var ErrLive = errors.New("the recording of a live broadcast cannot be deleted")

// enforce removes a channel's oldest finished recordings beyond MaxAge and MaxBytes.
func (r *Recorder) enforce(channel string) {
	if r.opts.MaxAge <= 0 && r.opts.MaxBytes <= 0 {
		return
	}
	metas := r.read(channel)
	sort.Slice(metas, func(i, j int) bool { return metas[i].ID < metas[j].ID }) // oldest first
	var total int64
	for _, m := range metas {
		total += m.Size
	}
	for _, m := range metas {
		old := r.opts.MaxAge > 0 && time.Since(m.Started.Add(m.Duration)) > r.opts.MaxAge
		big := r.opts.MaxBytes > 0 && total > r.opts.MaxBytes
		if !old && !big {
			continue
		}
		if m.State == StateRecording {
			continue // never the live one
		}
		if err := os.RemoveAll(filepath.Join(r.opts.Dir, channel, m.ID)); err != nil {
			r.log.Error("old recording not removed", "channel", channel, "recording", m.ID, "err", err)
			continue
		}
		total -= m.Size
		r.metrics.removed.Add(1)
		r.log.Info("recording removed by retention", "channel", channel, "recording", m.ID, "age_limit", old, "size_limit", big)
	}
}

// janitor applies MaxAge to every channel every few minutes.
func (r *Recorder) janitor(ctx context.Context) {
	t := time.NewTicker(5 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			ents, _ := os.ReadDir(r.opts.Dir)
			for _, e := range ents {
				if e.IsDir() && ingest.ValidChannelName(e.Name()) {
					r.enforce(e.Name())
				}
			}
		}
	}
}

// metrics are the Recorder's counts for /metrics.
type metrics struct {
	started atomic.Uint64
	bytes   atomic.Uint64
	removed atomic.Uint64

	mu       sync.Mutex
	failures map[string]uint64
}

func (m *metrics) failed(reason string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.failures[reason]++
}

var (
	startedDesc  = prometheus.NewDesc("onair_recordings_started_total", "Recordings started.", nil, nil)
	activeDesc   = prometheus.NewDesc("onair_recordings_active", "Recordings being written.", nil, nil)
	bytesDesc    = prometheus.NewDesc("onair_recording_written_bytes_total", "Media bytes written to recordings.", nil, nil)
	removedDesc  = prometheus.NewDesc("onair_recordings_removed_total", "Recordings removed (retention, or deleted through the API).", nil, nil)
	failuresDesc = prometheus.NewDesc("onair_recording_failures_total",
		"Recordings stopped (or never started) while their broadcast went on, by reason: disk_full, write_error, slow_disk.", []string{"reason"}, nil)
)

// Describe implements prometheus.Collector.
func (r *Recorder) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{startedDesc, activeDesc, bytesDesc, removedDesc, failuresDesc} {
		ch <- d
	}
}

// Collect implements prometheus.Collector.
func (r *Recorder) Collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	active := len(r.active)
	r.mu.Unlock()
	ch <- prometheus.MustNewConstMetric(startedDesc, prometheus.CounterValue, float64(r.metrics.started.Load()))
	ch <- prometheus.MustNewConstMetric(activeDesc, prometheus.GaugeValue, float64(active))
	ch <- prometheus.MustNewConstMetric(bytesDesc, prometheus.CounterValue, float64(r.metrics.bytes.Load()))
	ch <- prometheus.MustNewConstMetric(removedDesc, prometheus.CounterValue, float64(r.metrics.removed.Load()))
	r.metrics.mu.Lock()
	defer r.metrics.mu.Unlock()
	for _, reason := range []string{"disk_full", "write_error", "slow_disk"} {
		ch <- prometheus.MustNewConstMetric(failuresDesc, prometheus.CounterValue, float64(r.metrics.failures[reason]), reason)
	}
}
