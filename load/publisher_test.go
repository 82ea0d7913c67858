package load

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestServiceSchedule drives one publisher's scheduling by hand, with its
// schedule started some loops ago, and reads what one tick wrote: the
// start messages once, then every due message (more than one batch when
// far behind) with timestamps that continue from loop to loop, the
// extended form past 0xffffff ms, and the lateness it fell into.
func TestServiceSchedule(t *testing.T) {
	tags := []Tag{
		{Type: tagScript, Data: []byte{2, 0, 1, 'x'}},
		{Type: tagVideo, Data: []byte{0x17, 0, 0, 0, 0, 1}},
		{Type: tagAudio, Data: []byte{0xaf, 0, 0x12, 0x10}},
		{Type: tagVideo, Timestamp: 0, Data: bytes.Repeat([]byte{0x17, 1, 0, 0, 0}, 100)},
		{Type: tagAudio, Timestamp: 10, Data: []byte{0xaf, 1, 1}},
		{Type: tagVideo, Timestamp: 40, Data: []byte{0x27, 1, 0, 0, 0}},
	}
	media, err := PrepareMedia(tags, 128)
	if err != nil {
		t.Fatal(err)
	}
	if media.loopDur != 80 {
		t.Fatalf("loop of %d ms, want 80", media.loopDur)
	}
	for _, tc := range []struct{ startLoop, loops uint64 }{{0, 2}, {0, 40}, {extendedTS/80 - 1, 2}} {
		startLoop := tc.startLoop
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		srv, err := ln.Accept()
		ln.Close()
		if err != nil {
			t.Fatal(err)
		}
		p := &publisher{media: media}
		if err := p.attach(&session{nc: c, chunkSize: 128, streamID: 7}); err != nil {
			t.Fatal(err)
		}
		p.state.Store(stateLive)
		p.loop = startLoop
		p.startSent = startLoop > 0
		now := time.Now()
		// tc.loops whole loops are due, and the next one up to 50 ms.
		behind := time.Duration(tc.loops)*80*time.Millisecond + 50*time.Millisecond
		p.t0 = now.Add(-(p.dueOf(0) + behind))
		p.service(now, 0, 100*time.Millisecond) // catches up in one tick
		c.Close()
		var want []uint32
		if startLoop == 0 {
			want = []uint32{0, 0, 0} // @setDataFrame, sequence headers
		}
		for k := startLoop; k <= startLoop+tc.loops; k++ {
			for _, ts := range []uint32{0, 10, 40} {
				if k == startLoop+tc.loops && ts > 50 {
					break
				}
				want = append(want, uint32(k*80)+ts)
			}
		}
		cr := newChunkReader(srv)
		var got []uint32
		for {
			m, err := cr.next()
			if err != nil {
				break
			}
			if m.msid != 7 {
				t.Fatalf("message on stream %d, want 7", m.msid)
			}
			got = append(got, m.ts)
		}
		srv.Close()
		if len(got) != len(want) {
			t.Fatalf("loop %d: timestamps %v, want %v", startLoop, got, want)
		}
		for i := range got {
			if got[i] != want[i] {
				t.Fatalf("loop %d: timestamps %v, want %v", startLoop, got, want)
			}
		}
		if startLoop > 0 && got[len(got)-1] < extendedTS {
			t.Fatalf("the test did not reach extended timestamps: %v", got)
		}
		// The first message was due that long before now.
		if late := time.Duration(p.maxLate.Load()); late < behind || late > behind+time.Second {
			t.Errorf("max lateness %v, want about %v", late, behind)
		}
		if p.lateMsgs.Load() == 0 || p.sent.Load() == 0 {
			t.Errorf("late messages %d, bytes %d", p.lateMsgs.Load(), p.sent.Load())
		}
	}
}
