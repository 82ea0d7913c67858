package ingest

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestFeed(t *testing.T) {
	v := func(dts int, key bool) AccessUnit {
		return AccessUnit{Kind: KindVideo, DTS: time.Duration(dts), Key: key}
	}
	a := func(dts int) AccessUnit { return AccessUnit{Kind: KindAudio, DTS: time.Duration(dts)} }
	av := Tracks{Video: &VideoTrack{}, Audio: &AudioTrack{}}
	audioOnly := Tracks{Audio: &AudioTrack{}}
	tests := []struct {
		name    string
		size    int
		tracks  Tracks
		push    []AccessUnit
		end     bool
		want    []time.Duration // DTS values Next returns, in order
		dropped uint64
	}{
		{name: "fits", size: 4, tracks: av, push: []AccessUnit{v(0, true), a(1), v(2, false)}, want: []time.Duration{0, 1, 2}},
		{name: "overflow flushes and waits for keyframe", size: 3, tracks: av,
			push: []AccessUnit{v(0, true), v(1, false), v(2, false), v(3, false), a(4), v(5, true), v(6, false)},
			want: []time.Duration{5, 6}, dropped: 5},
		{name: "overflow on a keyframe keeps it", size: 2, tracks: av,
			push: []AccessUnit{v(0, true), v(1, false), v(2, true)}, want: []time.Duration{2}, dropped: 2},
		{name: "audio-only drops oldest", size: 2, tracks: audioOnly,
			push: []AccessUnit{a(0), a(1), a(2), a(3)}, want: []time.Duration{2, 3}, dropped: 2},
		{name: "size below one is one", size: 0, tracks: audioOnly, push: []AccessUnit{a(0), a(1)}, want: []time.Duration{1}, dropped: 1},
		{name: "drains after end", size: 4, tracks: av, push: []AccessUnit{v(0, true), v(1, false)}, end: true, want: []time.Duration{0, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := NewFeed(tt.size, tt.tracks)
			for _, au := range tt.push {
				f.Push(au)
			}
			if tt.end {
				f.End(EndStopped, "")
				if f.Push(v(99, true)) {
					t.Fatal("push after end accepted")
				}
			}
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			defer cancel()
			var got []time.Duration
			for {
				au, err := f.Next(ctx)
				if err != nil {
					if tt.end && !errors.Is(err, ErrEnded) {
						t.Fatalf("err %v, want ErrEnded", err)
					}
					if !tt.end && !errors.Is(err, context.DeadlineExceeded) {
						t.Fatalf("err %v, want deadline", err)
					}
					break
				}
				got = append(got, au.DTS)
			}
			if len(got) != len(tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			for i := range got {
				if got[i] != tt.want[i] {
					t.Fatalf("got %v, want %v", got, tt.want)
				}
			}
			if d := f.Dropped(); d != tt.dropped {
				t.Fatalf("dropped %d, want %d", d, tt.dropped)
			}
		})
	}
}

func TestFeedWakesWaiter(t *testing.T) {
	f := NewFeed(4, Tracks{Audio: &AudioTrack{}})
	got := make(chan error, 1)
	go func() {
		_, err := f.Next(context.Background())
		got <- err
	}()
	time.Sleep(10 * time.Millisecond)
	f.Push(AccessUnit{Kind: KindAudio})
	select {
	case err := <-got:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(time.Second):
		t.Fatal("Next not woken by Push")
	}
	go func() {
		_, err := f.Next(context.Background())
		got <- err
	}()
	f.End(EndNewTracks, "codec changed")
	err := <-got
	if !errors.Is(err, ErrEnded) || EndReasonOf(err) != EndNewTracks {
		t.Fatalf("err %v, want the end with its reason", err)
	}
}

// A feed's ring starts small and grows up to its size, keeping order across the wrap.
func TestFeedGrows(t *testing.T) {
	f := NewFeed(100, Tracks{Audio: &AudioTrack{Codec: CodecAAC}})
	next := time.Duration(0)
	push := func(n int) {
		for range n {
			f.Push(AccessUnit{Kind: KindAudio, DTS: next})
			next++
		}
	}
	want := time.Duration(0)
	pop := func(n int) {
		for range n {
			au, err := f.Next(context.Background())
			if err != nil || au.DTS != want {
				t.Fatalf("got %v %v, want DTS %v", au.DTS, err, want)
			}
			want++
		}
	}
	push(20)
	pop(15)  // the ring's head moves on
	push(90) // wraps, then grows twice to hold 95
	if len(f.buf) != 100 || f.Dropped() != 0 {
		t.Fatalf("ring of %d, %d dropped", len(f.buf), f.Dropped())
	}
	pop(95)
	push(101) // over the size: the oldest audio goes
	if f.Dropped() != 1 {
		t.Fatalf("%d dropped, want 1", f.Dropped())
	}
}
