package moderation

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"time"

	"github.com/onairhq/onair/ingest"
)

// thumbWait bounds how long a thumbnail request waits for a fresh frame to be
// decoded (without screeners) before it is answered with what there is.
const thumbWait = 2 * time.Second

// Thumbnail returns the channel's current thumbnail as JPEG, and when its
// keyframe was received, without decoding anything: with screeners, the
// newest frame that passed screening; without, the one last decoded for a
// thumbnail request (see ThumbnailHandler).
func (m *Moderator) Thumbnail(channel string) ([]byte, time.Time, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	st := m.channels[channel]
	if st == nil || st.thumb == nil {
		return nil, time.Time{}, false
	}
	return st.thumb, st.thumbAt, true
}

// FreshThumbnail returns the channel's thumbnail as JPEG, having a keyframe
// decoded first when thumbnails are made on demand (no screeners) and there
// is none or it is stale; it waits for that decode until ctx is done.
func (m *Moderator) FreshThumbnail(ctx context.Context, channel string) ([]byte, bool) {
	img, _, _ := m.freshThumbnail(ctx, channel)
	return img, img != nil
}

// ThumbnailHandler serves the newest screened keyframe of a live channel as
// JPEG. Mount it on a pattern with a {name} wildcard, such as
// "GET /api/v1/channels/{name}/thumbnail.jpg". It answers 404 when the
// channel has no thumbnail (not live, not screened yet, or taken down), and
// sets Cache-Control: max-age=5, an ETag and Last-Modified; conditional and
// HEAD requests are handled by http.ServeContent.
//
// Without screeners, keyframes are decoded only here: a request that finds
// no thumbnail, or one older than ThumbnailInterval, has the newest sampled
// keyframe decoded by the decode pool and waits for it (a fraction of a
// second with a decoder running; at most 2 s, then what there is is served).
// Requests for the same channel meanwhile wait for the same decode.
func (m *Moderator) ThumbnailHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), thumbWait)
		img, etag, at := m.freshThumbnail(ctx, r.PathValue("name"))
		cancel()
		h := w.Header()
		if img == nil {
			h.Set("Cache-Control", "no-store")
			http.Error(w, "no thumbnail", http.StatusNotFound)
			return
		}
		h.Set("Content-Type", "image/jpeg")
		h.Set("Cache-Control", "public, max-age=5")
		h.Set("ETag", etag)
		http.ServeContent(w, r, "", at, bytes.NewReader(img))
	})
}

// freshThumbnail returns the channel's thumbnail, first having a newer
// keyframe decoded when thumbnails are made on demand and the one there is
// missing or stale; it waits for that decode until ctx is done.
func (m *Moderator) freshThumbnail(ctx context.Context, channel string) ([]byte, string, time.Time) {
	m.mu.Lock()
	st := m.channels[channel]
	if st == nil {
		m.mu.Unlock()
		return nil, "", time.Time{}
	}
	req, submit := st.refresh, false
	if req == nil && m.thumbDueLocked(st) {
		req, submit = m.thumbRequest(st), true
		st.refresh = req
	}
	m.mu.Unlock()
	if submit {
		m.pool.submit(req) // a failure finishes req, and onDone says why
	}
	if req != nil {
		select {
		case <-req.done:
		case <-ctx.Done():
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if st.thumb == nil || m.channels[channel] != st {
		return nil, "", time.Time{}
	}
	return st.thumb, st.thumbETag, st.thumbAt
}

// thumbDueLocked reports whether a thumbnail should be decoded for st now:
// only without screeners (screening makes them), with a keyframe sampled
// since the last one, and when there is none or it is older than
// ThumbnailInterval. m.mu is held.
func (m *Moderator) thumbDueLocked(st *broadcastState) bool {
	if len(m.screeners) > 0 || m.ffmpegErr != nil || st.track == nil || undecodable(st.key) != nil || st.takenDown {
		return false
	}
	if st.thumb != nil && time.Since(st.thumbMade) < m.opts.ThumbnailInterval {
		return false
	}
	return st.sampler.Pending()
}

// thumbRequest builds the decode request for st's newest sampled keyframe;
// when it is done the result becomes the thumbnail. m.mu is held.
func (m *Moderator) thumbRequest(st *broadcastState) *decodeRequest {
	var au ingest.AccessUnit
	req := &decodeRequest{
		key:     st.key,
		urgent:  true, // someone is waiting
		expires: time.Now().Add(thumbWait),
		take: func() ([]byte, bool) {
			smp, ok := st.sampler.TryNext()
			if !ok {
				return nil, false
			}
			au = smp.Target()
			return annexB(st.track, smp), true
		},
	}
	req.onDone = func(img []byte, err error) {
		m.mu.Lock()
		defer m.mu.Unlock()
		if st.refresh == req {
			st.refresh = nil
		}
		switch {
		case err == nil:
			m.metrics.decoded.Add(1)
			if !st.takenDown {
				st.setThumb(img, au.Received)
			}
		case errors.Is(err, errCanceled), errors.Is(err, errPoolClosed), errors.Is(err, errNoFrame):
		default:
			m.metrics.failure("decoder")
			m.log.Warn("decoding keyframe for a thumbnail failed", "channel", st.b.Channel, "broadcast", st.b.ID, "err", err)
		}
	}
	return req
}
