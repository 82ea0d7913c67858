package e2e

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// TestSIGTERMDuringBroadcast stops onair while a stream is live, players
// reload its playlist and viewers chat: from the signal on, every playlist
// answer carries EXT-X-ENDLIST (a waiting blocking request included) until
// the server stops answering, /readyz fails, every chat client gets a close
// frame, and the process exits within 10 s.
func TestSIGTERMDuringBroadcast(t *testing.T) {
	needTools(t, "ffmpeg")
	s := StartServer(t)
	pub := liveStream(t, s)
	media := mediaPlaylistURL(t, s.HTTP, "main")
	playlistAdvances(t, s.HTTP, 10*time.Second)

	var chats []*chatClient
	for _, name := range []string{"alice", "bob", "carol"} {
		chats = append(chats, mustOpenChat(t, s.HTTP, "main", name, ""))
	}
	chats[0].say(t, "hello")
	chats[1].waitFor(t, 5*time.Second, func(l chatLine) bool { return l.Type == "msg" && l.Text == "hello" })

	// A blocking request for a part that does not exist yet, in flight at the signal.
	_, pl := Get(t, media)
	blockURL := fmt.Sprintf("%s?_HLS_msn=%d&_HLS_part=0", media, nextMSN(t, pl)+1)
	type answer struct {
		code int
		body string
		err  error
		at   time.Time
	}
	blocked := make(chan answer, 1)
	go func() {
		resp, err := http.Get(blockURL)
		if err != nil {
			blocked <- answer{err: err, at: time.Now()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		blocked <- answer{code: resp.StatusCode, body: string(b), at: time.Now()}
	}()
	time.Sleep(200 * time.Millisecond)

	// Players reload the playlist every 100 ms from before the signal until the server is gone.
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var mu sync.Mutex
	var answers []answer
	var wg sync.WaitGroup
	for range 3 {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := http.Get(media)
				a := answer{err: err, at: time.Now()}
				if err == nil {
					b, _ := io.ReadAll(resp.Body)
					resp.Body.Close()
					a.code, a.body = resp.StatusCode, string(b)
				}
				mu.Lock()
				answers = append(answers, a)
				mu.Unlock()
				time.Sleep(100 * time.Millisecond)
			}
		})
	}
	time.Sleep(300 * time.Millisecond)

	sigAt := time.Now()
	s.cmd.Process.Signal(syscall.SIGTERM)

	// /readyz fails at once while HTTP still answers.
	time.Sleep(300 * time.Millisecond)
	if resp, err := http.Get(s.HTTP + "/readyz"); err != nil || resp.StatusCode != 503 {
		t.Errorf("/readyz during shutdown: %v %v, want 503", resp, err)
	} else {
		resp.Body.Close()
	}
	for _, c := range chats {
		ce := c.waitClosed(t, 5*time.Second)
		if ce == nil || ce.Code != websocket.CloseGoingAway {
			t.Errorf("chat client got %v at shutdown (%v), want a close frame 1001", ce, c.ended())
		}
	}
	select {
	case <-s.done:
	case <-time.After(10*time.Second - time.Since(sigAt)):
		t.Fatalf("onair still running 10 s after SIGTERM")
	}
	exitAfter := time.Since(sigAt)
	cancel()
	wg.Wait()
	if exited, _ := pub.Wait(5 * time.Second); !exited {
		t.Error("the publisher was not disconnected")
	}

	b := <-blocked
	if b.err != nil || b.code != 200 || !strings.Contains(b.body, "#EXT-X-ENDLIST") {
		t.Errorf("blocking request in flight at SIGTERM: %d %v, ENDLIST %v; want the ended playlist", b.code, b.err, strings.Contains(b.body, "#EXT-X-ENDLIST"))
	} else {
		t.Logf("blocking request answered with the ended playlist %s after SIGTERM", b.at.Sub(sigAt).Round(time.Millisecond))
	}

	var ended, live, refused int
	var lastEnded time.Time
	seenEnd := false
	for _, a := range answers {
		if a.at.Before(sigAt) {
			continue
		}
		switch {
		case a.err != nil:
			refused++
		case a.code == 200 && strings.Contains(a.body, "#EXT-X-ENDLIST"):
			ended++
			seenEnd = true
			lastEnded = a.at
		case a.code == 200 && seenEnd:
			t.Errorf("a live playlist was served %s after the ended one", a.at.Sub(sigAt))
		case a.code == 200:
			live++ // answered before the broadcast had ended
		default:
			t.Errorf("playlist answered %d %s after SIGTERM; want the ended playlist until the server stops", a.code, a.at.Sub(sigAt))
		}
	}
	if ended == 0 {
		t.Fatal("no player saw EXT-X-ENDLIST after SIGTERM")
	}
	t.Logf("after SIGTERM: %d live answers, %d ended answers (the last %s after the signal), %d refused; exit after %s",
		live, ended, lastEnded.Sub(sigAt).Round(time.Millisecond), refused, exitAfter.Round(time.Millisecond))
	if !strings.Contains(s.Logs(), "servers stopped") {
		t.Errorf("no clean stop in the log:\n%s", tail(s.Logs(), 2000))
	}
}

// nextMSN is the media sequence number of the segment a playlist is building now.
func nextMSN(t *testing.T, pl []byte) uint64 {
	t.Helper()
	var msn uint64
	segs := 0
	for _, l := range strings.Split(string(pl), "\n") {
		if v, ok := strings.CutPrefix(l, "#EXT-X-MEDIA-SEQUENCE:"); ok {
			fmt.Sscan(v, &msn)
		}
		if l != "" && !strings.HasPrefix(l, "#") {
			segs++
		}
	}
	return msn + uint64(segs)
}
