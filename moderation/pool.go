package moderation

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"runtime/debug"
	"slices"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// The decode pool turns sampled keyframes of every broadcast into JPEG with
// a fixed number of workers. Each worker owns at most one long-lived ffmpeg
// process (starting ffmpeg costs ~0.1 s of CPU, a keyframe in a running one
// ~10 ms), so however many broadcasts are live or start at once, at most
// Options.Decoders processes run, and none is started for a broadcast that
// nobody screens or looks at.
//
// Sharing: a keyframe is written with its broadcast's parameter sets in
// front, so it decodes on its own and any process of the same codec can
// decode it. ffmpeg fixes its output size at the first frame, so a process
// serves one codec and one output size (a decoderKey); a broadcast whose
// size is unknown gets a process of its own key.
//
// Queue and drop policy:
//   - A request names a broadcast's sample mailbox, not a frame: the worker
//     takes the newest sample when it starts. A frame replaced by a newer one
//     while waiting is never decoded (the Sampler counts it as superseded),
//     and a broadcast has at most one request waiting, because its caller
//     waits for one before it makes the next.
//   - Urgent requests (a broadcast's first screening, a thumbnail a client
//     waits for) go before routine ones; each class is first in, first out.
//   - At most queueMax requests wait; one more is dropped at once
//     (queue_full). A request still waiting at its deadline is dropped
//     (expired); its caller counts a decoding failure.
//   - A free worker takes the oldest request its process can serve before
//     the oldest of another key, unless the head of the queue has waited
//     affinityWait; then the head goes first, to a worker without a process
//     if there is one, else the one idle longest (which restarts ffmpeg for
//     the new key). With no more distinct keys than workers, nothing restarts.
//   - A process unused for the idle time is stopped. A process that fails
//     or takes longer than the decode timeout is killed; after a failure the
//     worker waits (100 ms, doubling to 5 s) before it starts ffmpeg again,
//     failing requests meanwhile, so a broken ffmpeg is not started in a loop.
//
// A request is a self-contained byte stream from a random-access point, so a
// later request may carry a keyframe and the frames after it (a GOP prefix)
// to screen frames between keyframes with the same workers.
type decodePool struct {
	ffmpeg   string
	maxWidth int
	timeout  time.Duration // one decode in a running process
	idle     time.Duration
	queueMax int
	log      *slog.Logger
	metrics  *metrics

	ctx  context.Context // ends the workers
	stop context.CancelFunc
	wg   sync.WaitGroup

	mu      sync.Mutex
	queue   []*decodeRequest // urgent ones first, then routine, each in arrival order
	workers []*decodeWorker
	closed  bool
}

// affinityWait is how long the head of the queue may wait while free
// workers take younger requests their running process can serve.
const affinityWait = 250 * time.Millisecond

// Restart backoff after a decoder failure.
const (
	restartBackoffMin = 100 * time.Millisecond
	restartBackoffMax = 5 * time.Second
)

// Why a request failed without being decoded.
var (
	errQueueFull  = errors.New("decode queue full")
	errExpired    = errors.New("no decoder was free in time")
	errCanceled   = errors.New("decode canceled")
	errPoolClosed = errors.New("decode pool closed")
	errNoFrame    = errors.New("no frame to decode")
)

// decoderKey is what a decoder process can serve: one codec, one output size.
type decoderKey struct {
	codec         ingest.Codec
	width, height int
	// broadcast is set when the input size is unknown: the output size then
	// follows the first frame, so the process may serve that broadcast only.
	broadcast string
}

// maxFrameSide bounds the frame size a key is derived from; a larger one is
// treated as unknown, and frames of an unknown size are not decoded.
const maxFrameSide = 8192

// undecodable says why frames of key are never given to a decoder, or nil.
func undecodable(key decoderKey) error {
	switch {
	case !decodable(key.codec):
		return fmt.Errorf("decoding frames: codec %q is not supported", key.codec)
	case key.broadcast != "":
		// The SPS gave no size, or an absurd one: a decoder would allocate
		// whatever it says before the first pixel.
		return fmt.Errorf("decoding frames: frame size unknown or over %d pixels a side: not decoded", maxFrameSide)
	}
	return nil
}

// keyFor returns the decoder key of a broadcast's video track: frames wider
// than maxWidth (if positive) are scaled down to it, keeping the aspect
// ratio, both sides rounded to even numbers for the JPEG encoder.
func keyFor(track *ingest.VideoTrack, broadcastID string, maxWidth int) decoderKey {
	k := decoderKey{codec: track.Codec}
	w, h := track.Width, track.Height
	if w <= 0 || h <= 0 || w > maxFrameSide || h > maxFrameSide {
		k.broadcast = broadcastID
		return k
	}
	if maxWidth > 0 && w > maxWidth {
		h = (h*maxWidth + w/2) / w
		w = maxWidth
	}
	k.width, k.height = max(2, w&^1), max(2, (h+1)&^1)
	return k
}

// requestState is where a request is; guarded by decodePool.mu.
type requestState uint8

const (
	stateQueued requestState = iota
	stateRunning
	stateDone
)

// decodeRequest is one broadcast's turn in the pool.
type decodeRequest struct {
	key     decoderKey
	urgent  bool
	expires time.Time // zero: waits as long as it takes
	// take returns the Annex-B bytes to decode, called by the worker when it
	// starts; false means there is nothing left to decode.
	take func() ([]byte, bool)
	// onDone, if set, is called once with the result before done is closed.
	onDone func(img []byte, err error)

	queued time.Time
	state  requestState
	done   chan struct{}
	img    []byte // the last image: the frame to screen
	keyImg []byte // the first image: the keyframe's
	err    error
}

// decodeWorker is one of the pool's workers.
type decodeWorker struct {
	wake chan *decodeRequest // at most one request, handed over by dispatch

	// Guarded by decodePool.mu: what dispatch needs to know.
	busy      bool
	hasProc   bool
	key       decoderKey
	idleSince time.Time

	// Owned by the worker's goroutine.
	dec      *Decoder
	failures int
	retryAt  time.Time
}

// poolOptions configures a decodePool.
type poolOptions struct {
	FFmpegPath string
	MaxWidth   int // for keys of unknown size
	Workers    int
	QueueMax   int
	Timeout    time.Duration
	Idle       time.Duration
	Logger     *slog.Logger
}

// newDecodePool starts the pool's workers; close stops them.
func newDecodePool(o poolOptions, mt *metrics) *decodePool {
	ctx, cancel := context.WithCancel(context.Background())
	p := &decodePool{
		ffmpeg: o.FFmpegPath, maxWidth: o.MaxWidth, timeout: o.Timeout, idle: o.Idle,
		queueMax: o.QueueMax, log: o.Logger, metrics: mt, ctx: ctx, stop: cancel,
	}
	mt.decoders.Store(int64(o.Workers))
	for range o.Workers {
		w := &decodeWorker{wake: make(chan *decodeRequest, 1)}
		p.workers = append(p.workers, w)
		p.wg.Add(1)
		go p.run(w)
	}
	return p
}

// submit queues req; its done channel is closed (and onDone called) once it
// was decoded or dropped. An error means it was dropped at once.
func (p *decodePool) submit(req *decodeRequest) error {
	req.done = make(chan struct{})
	req.queued = time.Now()
	p.mu.Lock()
	var err error
	switch {
	case p.closed:
		err = errPoolClosed
	case len(p.queue) >= p.queueMax:
		err = errQueueFull
		p.metrics.decodeDropped("queue_full")
	default:
		i := len(p.queue)
		if req.urgent {
			i = slices.IndexFunc(p.queue, func(r *decodeRequest) bool { return !r.urgent })
			if i < 0 {
				i = len(p.queue)
			}
		}
		p.queue = slices.Insert(p.queue, i, req)
	}
	p.mu.Unlock()
	if err != nil {
		p.finish(req, nil, err)
		return err
	}
	p.dispatch()
	return nil
}

// decode submits req and waits for its image. It gives up when ctx is done
// (the request is withdrawn if it is still waiting) or, for a request still
// waiting at its deadline, with errExpired.
func (p *decodePool) decode(ctx context.Context, req *decodeRequest) ([]byte, error) {
	if err := p.submit(req); err != nil {
		return nil, err
	}
	var expire <-chan time.Time
	if !req.expires.IsZero() {
		t := time.NewTimer(time.Until(req.expires))
		defer t.Stop()
		expire = t.C
	}
	select {
	case <-req.done:
		return req.img, req.err
	case <-ctx.Done():
		p.drop(req, "canceled", errCanceled)
		return nil, ctx.Err()
	case <-expire:
		if p.drop(req, "expired", errExpired) {
			return nil, errExpired
		}
	}
	// Running: the worker's own timeout bounds it.
	select {
	case <-req.done:
		return req.img, req.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// cancel withdraws req if it is still waiting and reports whether it was.
func (p *decodePool) cancel(req *decodeRequest) bool {
	return p.drop(req, "canceled", errCanceled)
}

// drop removes req from the queue, if it is still there, and finishes it with err.
func (p *decodePool) drop(req *decodeRequest, reason string, err error) bool {
	p.mu.Lock()
	i := slices.Index(p.queue, req)
	if i >= 0 {
		p.queue = slices.Delete(p.queue, i, i+1)
		p.metrics.decodeQueued.Store(int64(len(p.queue)))
	}
	p.mu.Unlock()
	if i < 0 {
		return false
	}
	p.metrics.decodeDropped(reason)
	p.finish(req, nil, err)
	return true
}

// finish completes req once: result, onDone, then done closed.
func (p *decodePool) finish(req *decodeRequest, img []byte, err error) {
	p.mu.Lock()
	if req.state == stateDone {
		p.mu.Unlock()
		return
	}
	req.state = stateDone
	p.mu.Unlock()
	req.img, req.err = img, err
	if req.onDone != nil {
		req.onDone(img, err)
	}
	close(req.done)
}

// dispatch hands waiting requests to free workers and drops expired ones.
func (p *decodePool) dispatch() {
	var expired []*decodeRequest
	p.mu.Lock()
	now := time.Now()
	p.queue = slices.DeleteFunc(p.queue, func(r *decodeRequest) bool {
		if !r.expires.IsZero() && now.After(r.expires) {
			expired = append(expired, r)
			return true
		}
		return false
	})
	for len(p.queue) > 0 && !p.closed {
		w, i := p.pickLocked(now)
		if w == nil {
			break
		}
		req := p.queue[i]
		p.queue = slices.Delete(p.queue, i, i+1)
		req.state = stateRunning
		w.busy = true
		w.wake <- req // never blocks: a free worker's slot is empty
	}
	p.metrics.decodeQueued.Store(int64(len(p.queue)))
	p.mu.Unlock()
	for _, r := range expired {
		p.metrics.decodeDropped("expired")
		p.finish(r, nil, errExpired)
	}
}

// pickLocked chooses a free worker and the index of the request it runs, or
// nil when every worker is busy. p.mu is held and the queue is not empty.
func (p *decodePool) pickLocked(now time.Time) (*decodeWorker, int) {
	head := p.queue[0]
	if now.Sub(head.queued) < affinityWait {
		// A free worker whose process fits a request of the head's class
		// takes the oldest such request.
		var bw *decodeWorker
		best := -1
		for _, w := range p.workers {
			if w.busy || !w.hasProc {
				continue
			}
			for i, r := range p.queue {
				if r.urgent != head.urgent {
					break
				}
				if r.key == w.key {
					if best < 0 || i < best {
						bw, best = w, i
					}
					break
				}
			}
		}
		if bw != nil {
			return bw, best
		}
	}
	// The head goes to a free worker: one whose process fits it, else one
	// without a process, else the one idle longest.
	var pick *decodeWorker
	for _, w := range p.workers {
		switch {
		case w.busy:
		case w.hasProc && w.key == head.key:
			return w, 0
		case pick == nil:
			pick = w
		case pick.hasProc && !w.hasProc:
			pick = w
		case pick.hasProc == w.hasProc && w.idleSince.Before(pick.idleSince):
			pick = w
		}
	}
	return pick, 0
}

// run is one worker's loop until the pool closes.
func (p *decodePool) run(w *decodeWorker) {
	defer p.wg.Done()
	idle := time.NewTimer(p.idle)
	idle.Stop()
	defer func() {
		idle.Stop()
		p.stopProcess(w, "close")
	}()
	for {
		select {
		case <-p.ctx.Done():
			return
		case req := <-w.wake:
			p.serve(w, req)
			if w.dec != nil {
				idle.Reset(p.idle)
			}
			p.mu.Lock()
			w.busy, w.idleSince = false, time.Now()
			p.mu.Unlock()
			p.dispatch()
		case <-idle.C:
			p.mu.Lock()
			// A request may have been handed over just now, for this process.
			stop := !w.busy && w.dec != nil
			if stop {
				w.hasProc = false
			}
			p.mu.Unlock()
			if stop {
				p.stopProcess(w, "idle")
			}
		}
	}
}

// serve decodes one request on worker w. A panic fails the request and
// costs the worker its process, never the pool.
func (p *decodePool) serve(w *decodeWorker, req *decodeRequest) {
	var img []byte
	var err error
	defer func() {
		if r := recover(); r != nil {
			p.metrics.panicked("decoder")
			p.log.Error("decoder worker panicked", "panic", r, "stack", string(debug.Stack()))
			p.stopProcess(w, "failure")
			img, err = nil, fmt.Errorf("decoder worker panicked: %v", r)
		}
		p.finish(req, img, err)
	}()
	p.metrics.decodeWaited(time.Since(req.queued))
	data, ok := req.take()
	if !ok {
		err = errNoFrame
		return
	}
	req.keyImg, img, err = p.decodeOn(w, req.key, data)
}

// decodeOn decodes data with w's process, (re)starting it for key as needed,
// and returns the first and the last image.
func (p *decodePool) decodeOn(w *decodeWorker, key decoderKey, data []byte) (first, last []byte, err error) {
	if w.dec != nil && w.key != key {
		p.stopProcess(w, "switch")
	}
	if w.dec == nil {
		if wait := time.Until(w.retryAt); wait > 0 {
			return nil, nil, fmt.Errorf("decoder failed %d times in a row: next start in %v", w.failures, wait.Round(time.Millisecond))
		}
		opts := DecoderOptions{FFmpegPath: p.ffmpeg, Codec: key.codec, Width: key.width, Height: key.height}
		if key.broadcast != "" {
			opts.MaxWidth = p.maxWidth
		}
		p.metrics.decoderStarts.Add(1)
		d, err := StartDecoder(opts)
		if err != nil {
			p.failed(w)
			return nil, nil, err
		}
		w.dec = d
		p.metrics.processes.Add(1)
		p.mu.Lock()
		w.hasProc, w.key = true, key
		p.mu.Unlock()
	}
	ctx, cancel := context.WithTimeout(p.ctx, p.timeout)
	defer cancel()
	t0 := time.Now()
	first, last, err = w.dec.DecodeSample(ctx, data)
	if err != nil {
		// Its state is unknown now (a frame may still come out): start afresh.
		p.stopProcess(w, "failure")
		p.failed(w)
		return nil, nil, err
	}
	w.failures = 0
	p.metrics.decodeTook(time.Since(t0))
	return first, last, nil
}

// failed counts a failure of w's decoder and sets when it may start again.
func (p *decodePool) failed(w *decodeWorker) {
	w.failures++
	backoff := restartBackoffMax
	if w.failures < 10 {
		backoff = min(restartBackoffMin<<(w.failures-1), restartBackoffMax)
	}
	w.retryAt = time.Now().Add(backoff)
}

// stopProcess ends w's ffmpeg process, if it has one.
func (p *decodePool) stopProcess(w *decodeWorker, reason string) {
	if w.dec == nil {
		return
	}
	p.mu.Lock()
	w.hasProc = false
	p.mu.Unlock()
	w.dec.Close()
	w.dec = nil
	p.metrics.processes.Add(-1)
	p.metrics.decoderStopped(reason)
}

// close fails what waits, stops the workers and their processes, and waits
// until they have exited.
func (p *decodePool) close() {
	p.mu.Lock()
	p.closed = true
	queued := p.queue
	p.queue = nil
	p.mu.Unlock()
	for _, r := range queued {
		p.finish(r, nil, errPoolClosed)
	}
	p.stop()
	p.wg.Wait()
	// Requests handed to a worker that stopped before it took them.
	for _, w := range p.workers {
		select {
		case r := <-w.wake:
			p.finish(r, nil, errPoolClosed)
		default:
		}
	}
}
