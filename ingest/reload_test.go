package ingest

import (
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// rawPublish connects from local and publishes key, reporting whether the publish was confirmed.
func rawPublish(t *testing.T, ts *testServer, local, key string) (*rawClient, bool) {
	t.Helper()
	r := dialRaw(t, ts.addr, local).handshake()
	if err := r.connectPublish("live", key); err != nil {
		t.Fatal(err)
	}
	return r, r.readUntil("NetStream.Publish.Start", 2*time.Second)
}

// A reload replaces channels and keys without touching what goes on: a kept
// channel stays live, a removed one ends, new keys apply to the next publish.
func TestSetChannels(t *testing.T) {
	needTools(t, "ffmpeg")
	tags := readFLV(t, filepath.Join(testMedia(t), "h264aac.flv"))
	ts := startHub(t, func(o *Options) { o.Grace = time.Minute })
	demo := rawPublisher(t, ts, "127.0.0.2")
	sendTags(t, demo, tags[:40], 0, sameTS)
	other, ok := rawPublish(t, ts, "127.0.0.3", "other-key")
	if !ok {
		t.Fatal("other channel refused")
	}
	other.drain()
	sendTags(t, other, tags[:40], 0, sameTS)
	waitFor(t, "two broadcasts", 3*time.Second, func() bool { return len(ts.rec.broadcasts()) == 2 })
	bs := ts.rec.broadcasts()

	if err := ts.hub.SetChannels([]ChannelConfig{{Name: "demo", Keys: []string{"new-demo-key"}}, {Name: "Bad!", Keys: []string{"k"}}}); err == nil {
		t.Fatal("an invalid list was accepted")
	}
	if err := ts.hub.SetChannels([]ChannelConfig{{Name: "demo", Keys: []string{"new-demo-key"}}, {Name: "third", Keys: []string{"third-key"}}}); err != nil {
		t.Fatal(err)
	}
	// The removed channel's broadcast ends and its publisher is cut off.
	var otherB, demoB *Broadcast
	for _, b := range bs {
		if b.Channel == "other" {
			otherB = b
		} else {
			demoB = b
		}
	}
	waitEnded(t, ts, otherB.ID, 2*time.Second)
	if !other.closedWithin(2 * time.Second) {
		t.Error("the removed channel's publisher is still connected")
	}
	if _, ok := ts.hub.Channel("other"); ok {
		t.Error("the removed channel is still listed")
	}
	// The kept channel goes on with its publisher.
	before := len(ts.rec.unitsOf(demoB.ID, KindVideo))
	sendTags(t, demo, tags[40:80], 0, sameTS)
	waitFor(t, "more media on the kept channel", 2*time.Second, func() bool {
		return len(ts.rec.unitsOf(demoB.ID, KindVideo)) > before
	})
	if st, _ := ts.hub.Channel("demo"); !st.Live || !st.PublisherConnected {
		t.Errorf("kept channel %+v", st)
	}
	// Keys: the old one is refused, the new one reaches the channel (in use now).
	old, _ := rawPublish(t, ts, "127.0.0.4", testKey)
	if !old.readUntil("invalid stream key", time.Second) && !strings.Contains(ts.logs.String(), "reason=bad_key") {
		t.Error("the old key was not refused")
	}
	newKey, _ := rawPublish(t, ts, "127.0.0.5", "new-demo-key")
	_ = newKey
	waitFor(t, "in-use refusal", 2*time.Second, func() bool { return strings.Contains(ts.logs.String(), "reason=in_use") })
	if _, ok := rawPublish(t, ts, "127.0.0.6", "third-key"); !ok {
		t.Error("the new channel refused its key")
	}
	ev := ts.obs.list()
	if !strings.Contains(strings.Join(ev, "\n"), "end "+otherB.ID+" removed") || strings.Contains(strings.Join(ev, "\n"), "end "+demoB.ID) {
		t.Errorf("events %v", ev)
	}
}
