package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

// loadCounters is what the load did, for the report.
type loadCounters struct {
	publishes, drops, stops       atomic.Int64 // publisher connections; ended by a kill, by a clean stop
	playlists, segments, segBytes atomic.Int64 // HLS answers read
	hlsErrors                     atomic.Int64 // HLS requests that failed other than with 404 (offline)
	chatConns, chatSent, chatRecv atomic.Int64
	chatErrors                    atomic.Int64 // chat connections that failed or were closed by the server

	mu      sync.Mutex
	chatWhy map[string]int // chatErrors by reason
}

// chatFailed counts a chat connection that failed, by reason.
func (l *loadCounters) chatFailed(err error) {
	l.chatErrors.Add(1)
	why := err.Error()
	var ce *websocket.CloseError
	if errors.As(err, &ce) {
		why = fmt.Sprintf("close %d %s", ce.Code, ce.Text)
	} else if i := strings.LastIndex(why, ": "); i >= 0 {
		why = why[i+2:] // the cause, without addresses
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.chatWhy == nil {
		l.chatWhy = map[string]int{}
	}
	l.chatWhy[why]++
}

// chatReasons lists why chat connections failed.
func (l *loadCounters) chatReasons() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	var parts []string
	for why, n := range l.chatWhy {
		parts = append(parts, fmt.Sprintf("%d × %s", n, why))
	}
	slices.Sort(parts)
	return strings.Join(parts, "; ")
}

type loadSnapshot struct {
	publishes, drops, stops, playlists, segments, segBytes, hlsErrors int64
	chatConns, chatSent, chatRecv, chatErrors                         int64
}

func (l *loadCounters) snapshot() loadSnapshot {
	return loadSnapshot{l.publishes.Load(), l.drops.Load(), l.stops.Load(), l.playlists.Load(), l.segments.Load(),
		l.segBytes.Load(), l.hlsErrors.Load(), l.chatConns.Load(), l.chatSent.Load(), l.chatRecv.Load(), l.chatErrors.Load()}
}

// loadRates is the load over one sampling interval.
type loadRates struct {
	publishes       int64
	segPerSec       float64
	mbitPerSec      float64
	chatRecvPerSec  float64
	hlsErr, chatErr int64
}

func (s loadSnapshot) since(p loadSnapshot, d time.Duration) loadRates {
	secs := d.Seconds()
	return loadRates{
		publishes:      s.publishes - p.publishes,
		segPerSec:      float64(s.segments-p.segments) / secs,
		mbitPerSec:     float64(s.segBytes-p.segBytes) * 8 / secs / 1e6,
		chatRecvPerSec: float64(s.chatRecv-p.chatRecv) / secs,
		hlsErr:         s.hlsErrors - p.hlsErrors,
		chatErr:        s.chatErrors - p.chatErrors,
	}
}

func (s loadSnapshot) summary() string {
	return fmt.Sprintf("load: %d publishes (%d dropped, %d stopped cleanly); %d playlist and %d segment answers (%.0f MB); "+
		"%d chat connections, %d messages sent, %d delivered; errors: %d HLS, %d chat",
		s.publishes, s.drops, s.stops, s.playlists, s.segments, float64(s.segBytes)/1e6,
		s.chatConns, s.chatSent, s.chatRecv, s.hlsErrors, s.chatErrors)
}

// makeClip encodes the 10 s source every publisher loops (1 s keyframes, AAC).
func makeClip(ctx context.Context, dir string) (string, error) {
	out := filepath.Join(dir, "clip.flv")
	cmd := exec.CommandContext(ctx, "ffmpeg", "-hide_banner", "-loglevel", "error", "-y",
		"-f", "lavfi", "-i", "testsrc2=size=640x360:rate=30:duration=10",
		"-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000:duration=10",
		"-c:v", "libx264", "-preset", "veryfast", "-pix_fmt", "yuv420p", "-g", "30", "-b:v", "1M",
		"-c:a", "aac", "-b:a", "96k", "-f", "flv", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("encode the source clip: %v: %s", err, b)
	}
	return out, nil
}

// jitter is d scaled by a random factor in [0.5, 1.5).
func jitter(d time.Duration) time.Duration {
	return time.Duration(float64(d) * (0.5 + rand.Float64()))
}

// publishLoop keeps channel i published, like a streamer on a flaky link: each
// connection lasts about life, then ffmpeg is killed (a drop, resumed within
// the reconnect grace) or stopped cleanly (the broadcast ends), and comes back.
func publishLoop(ctx context.Context, s *onairServer, clip string, i int, life time.Duration, l *loadCounters) {
	for ctx.Err() == nil {
		cmd := exec.Command("ffmpeg", "-hide_banner", "-loglevel", "error", "-re", "-stream_loop", "-1",
			"-i", clip, "-c", "copy", "-f", "flv", s.rtmp+"/"+streamKey(i))
		if err := cmd.Start(); err != nil {
			return
		}
		l.publishes.Add(1)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-ctx.Done():
		case <-done:
		case <-time.After(jitter(life)):
		}
		if rand.IntN(2) == 0 {
			cmd.Process.Signal(syscall.SIGKILL)
			l.drops.Add(1)
		} else {
			cmd.Process.Signal(os.Interrupt)
			l.stops.Add(1)
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(500+rand.IntN(2500)) * time.Millisecond):
		}
	}
}

// viewLoop plays channel ch like a plain HLS player: it reloads the media
// playlist about once a target duration and fetches every new segment once.
func viewLoop(ctx context.Context, s *onairServer, ch int, l *loadCounters) {
	client := &http.Client{Timeout: 30 * time.Second}
	base := s.http + "/hls/" + channelName(ch) + "/"
	seen := map[string]bool{}
	var media string
	get := func(url string) ([]byte, int) {
		req, _ := http.NewRequestWithContext(ctx, "GET", url, nil)
		resp, err := client.Do(req)
		if err != nil {
			if ctx.Err() == nil {
				l.hlsErrors.Add(1)
			}
			return nil, 0
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil && ctx.Err() == nil {
			l.hlsErrors.Add(1)
		}
		if resp.StatusCode != 200 && resp.StatusCode != 404 {
			l.hlsErrors.Add(1)
		}
		return b, resp.StatusCode
	}
	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
			return
		case <-time.After(time.Duration(800+rand.IntN(400)) * time.Millisecond):
		}
		if media == "" {
			mv, code := get(base + "index.m3u8")
			if code != 200 {
				continue // offline between publishes
			}
			media = firstURI(mv)
			continue
		}
		pl, code := get(base + media)
		if code != 200 {
			media = "" // a new broadcast may name its playlists anew
			continue
		}
		l.playlists.Add(1)
		for _, uri := range segmentURIs(pl) {
			if seen[uri] {
				continue
			}
			seen[uri] = true
			if b, code := get(base + uri); code == 200 {
				l.segments.Add(1)
				l.segBytes.Add(int64(len(b)))
			}
		}
		if len(seen) > 1000 {
			clear(seen) // old names never come back
		}
	}
}

func firstURI(pl []byte) string {
	for _, line := range strings.Split(string(pl), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			return line
		}
	}
	return ""
}

func segmentURIs(pl []byte) []string {
	var out []string
	for _, line := range strings.Split(string(pl), "\n") {
		if line = strings.TrimSpace(line); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// chatLoop is one chat viewer of channel ch: it stays about life, posts every
// `every`, reads everything, then leaves and comes back.
func chatLoop(ctx context.Context, s *onairServer, id, ch int, every, life time.Duration, l *loadCounters) {
	url := "ws" + strings.TrimPrefix(s.http, "http") + "/chat/" + channelName(ch) + fmt.Sprintf("?name=viewer%d", id)
	// Spread the first connections over a few seconds.
	select {
	case <-ctx.Done():
		return
	case <-time.After(time.Duration(rand.IntN(5000)) * time.Millisecond):
	}
	for ctx.Err() == nil {
		chatSession(ctx, url, every, jitter(life), l)
		select {
		case <-ctx.Done():
		case <-time.After(time.Duration(1000+rand.IntN(4000)) * time.Millisecond):
		}
	}
}

func chatSession(ctx context.Context, url string, every, life time.Duration, l *loadCounters) {
	d := websocket.Dialer{HandshakeTimeout: 10 * time.Second}
	ws, resp, err := d.DialContext(ctx, url, nil)
	if err != nil {
		if ctx.Err() == nil {
			if resp != nil {
				err = fmt.Errorf("HTTP %d", resp.StatusCode)
			}
			l.chatFailed(err)
		}
		return
	}
	defer ws.Close()
	l.chatConns.Add(1)
	readDone := make(chan error, 1)
	go func() {
		for {
			_, data, err := ws.ReadMessage()
			if err != nil {
				readDone <- err
				return
			}
			sc := bufio.NewScanner(strings.NewReader(string(data)))
			for sc.Scan() {
				var m struct{ Type string }
				if json.Unmarshal(sc.Bytes(), &m) == nil && m.Type == "msg" {
					l.chatRecv.Add(1)
				}
			}
		}
	}()
	leave := time.After(life)
	post := time.NewTicker(jitter(every))
	defer post.Stop()
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			<-readDone
			return
		case <-leave:
			ws.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
			<-readDone
			return
		case err := <-readDone:
			if !websocket.IsCloseError(err, websocket.CloseNormalClosure) {
				l.chatFailed(err)
			}
			return
		case <-post.C:
			ws.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if err := ws.WriteJSON(map[string]string{"type": "send", "text": fmt.Sprintf("soak message %d", n)}); err != nil {
				l.chatFailed(err)
				return
			}
			l.chatSent.Add(1)
		}
	}
}
