package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// listed is a part or segment and when it first appeared in the playlist.
type listed struct {
	uri  string
	part bool
	dur  time.Duration
	at   time.Time
}

// playlist is what the watcher needs from a media playlist.
type playlist struct {
	mediaSeq uint64
	segments int      // complete segments listed
	trailing int      // parts listed after the last complete segment
	items    []listed // parts and segments in playlist order
	ll       bool     // has EXT-X-PART or a preload hint
}

func parsePlaylist(r io.Reader) (playlist, error) {
	var p playlist
	sc := bufio.NewScanner(r)
	var extinf time.Duration
	gap := false
	for sc.Scan() {
		l := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"):
			v, err := strconv.ParseUint(strings.TrimPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"), 10, 64)
			if err != nil {
				return p, fmt.Errorf("bad media sequence %q", l)
			}
			p.mediaSeq = v
		case strings.HasPrefix(l, "#EXT-X-PART:"):
			p.ll = true
			p.trailing++
			attrs := strings.TrimPrefix(l, "#EXT-X-PART:")
			var it listed
			it.part = true
			for _, a := range strings.Split(attrs, ",") {
				k, v, _ := strings.Cut(a, "=")
				switch k {
				case "DURATION":
					it.dur = seconds(v)
				case "URI":
					it.uri = strings.Trim(v, `"`)
				}
			}
			p.items = append(p.items, it)
		case strings.HasPrefix(l, "#EXT-X-PRELOAD-HINT"):
			p.ll = true
		case strings.HasPrefix(l, "#EXTINF:"):
			v, _, _ := strings.Cut(strings.TrimPrefix(l, "#EXTINF:"), ",")
			extinf = seconds(v)
		case l == "#EXT-X-GAP":
			gap = true // a placeholder before the stream's first segment
		case l != "" && !strings.HasPrefix(l, "#"):
			if !gap {
				p.items = append(p.items, listed{uri: l, dur: extinf})
			}
			gap = false
			p.segments++
			p.trailing = 0
		}
	}
	return p, sc.Err()
}

func seconds(s string) time.Duration {
	f, _ := strconv.ParseFloat(s, 64)
	return time.Duration(f * float64(time.Second))
}

// watchPlaylist records when each part and segment of a media playlist is
// first listed, until ctx ends. With blocking set it asks for the next part
// with _HLS_msn/_HLS_part (LL-HLS); otherwise it polls every poll.
func watchPlaylist(ctx context.Context, url string, blocking bool, poll time.Duration) ([]listed, error) {
	seen := map[string]bool{}
	var out []listed
	var next string
	client := &http.Client{}
	for ctx.Err() == nil {
		u := url
		if next != "" {
			u += next
		}
		req, err := http.NewRequestWithContext(ctx, "GET", u, nil)
		if err != nil {
			return out, err
		}
		res, err := client.Do(req)
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			return out, fmt.Errorf("GET %s: %w", u, err)
		}
		now := time.Now()
		var p playlist
		if res.StatusCode == 200 {
			p, err = parsePlaylist(res.Body)
		}
		res.Body.Close()
		if err != nil {
			return out, err
		}
		if res.StatusCode == 200 {
			for _, it := range p.items {
				if !seen[it.uri] {
					seen[it.uri] = true
					it.at = now
					out = append(out, it)
				}
			}
		}
		if blocking && p.ll {
			next = fmt.Sprintf("?_HLS_msn=%d&_HLS_part=%d", p.mediaSeq+uint64(p.segments), p.trailing)
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(poll):
		}
	}
	return out, nil
}

// delays are, for each item listed after warm-up, how long after its last
// video frame was sent (and after the next frame, the one that closes it) it
// appeared in the playlist.
type delays struct {
	afterLast, afterClose []time.Duration
	unmatched             int
}

// matchDelays places each item on the sent frames' timeline by adding up the
// durations listed before it, starting at the first video frame (offset 0) or
// at the first keyframe's PTS (where a bitstream DTS extractor starts), and
// keeps whichever start matches frame boundaries best and breaks ties by
// causality: the latest start under which nothing was listed before the frame
// that closes it was sent. Items whose end is not within 2 ms of a frame
// boundary are counted as unmatched.
func matchDelays(items []listed, frames []sentFrame, parts bool, skip time.Duration) delays {
	if len(frames) == 0 {
		return delays{}
	}
	best := delays{unmatched: -1}
	for _, start := range []time.Duration{frames[0].dts, frames[0].pts} {
		var d delays
		cum := start
		for _, it := range items {
			if it.part != parts {
				continue
			}
			cum += it.dur
			if cum-start < skip {
				continue
			}
			i := nearestFrame(frames, cum)
			if i <= 0 || absDur(frames[i].dts-cum) > 2*time.Millisecond {
				d.unmatched++
				continue
			}
			d.afterLast = append(d.afterLast, it.at.Sub(frames[i-1].at))
			d.afterClose = append(d.afterClose, it.at.Sub(frames[i].at))
		}
		if best.unmatched < 0 || d.unmatched < best.unmatched ||
			d.unmatched == best.unmatched && len(d.afterClose) > 0 && slices.Min(d.afterClose) >= 0 {
			best = d
		}
	}
	return best
}

func nearestFrame(frames []sentFrame, dts time.Duration) int {
	best := -1
	for i, f := range frames {
		if best < 0 || absDur(f.dts-dts) < absDur(frames[best].dts-dts) {
			best = i
		}
	}
	return best
}

func absDur(d time.Duration) time.Duration {
	if d < 0 {
		return -d
	}
	return d
}
