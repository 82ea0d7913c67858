package ingest

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/onairhq/onair/internal/metricstest"
)

// metric returns the text exposition of ts's hub.
func (ts *testServer) metrics() string {
	var m bytes.Buffer
	_ = metricstest.Write(&m, ts.hub)
	return m.String()
}

// nested returns an AMF0 value nested depth objects deep.
func nestedAMF(depth int) []byte {
	var b []byte
	for range depth {
		b = append(b, 0x03, 0, 1, 'a')
	}
	b = append(b, 0x05)
	for range depth {
		b = append(b, 0, 0, 0x09)
	}
	return b
}

// Hostile chunk streams are refused by the guard, with a log line and a
// metric, before go-rtmp buffers or decodes them, and cost little memory.
func TestChunkGuardRefuses(t *testing.T) {
	strictArray := func(n uint32) []byte {
		b := append(amf(t, "createStream", 2.0), 0x0a)
		return binary.BigEndian.AppendUint32(b, n)
	}
	tests := []struct {
		name   string
		attack func(r *rawClient) error
		reason string
	}{
		{"SetChunkSize 1 MiB, then 4 MiB into each of 16 chunk streams", func(r *rawClient) error {
			if err := r.setChunkSize(1 << 20); err != nil {
				return err
			}
			return floodChunkStreams(r, 16, 4<<20)
		}, violChunkSize},
		{"1 MiB into each of 8 chunk streams under the chunk size cap", func(r *rawClient) error {
			if err := r.setChunkSize(MaxPeerChunkSize); err != nil {
				return err
			}
			return floodChunkStreams(r, 8, 1<<20)
		}, violBudget},
		{"100 chunk streams", func(r *rawClient) error { return floodChunkStreams(r, 100, 1024) }, violChunkStreams},
		{"SetChunkSize 0", func(r *rawClient) error { return r.setChunkSize(0) }, violChunkSize},
		{"3-byte chunk stream ID", func(r *rawClient) error {
			return r.write(append(chunkHeader(0, 400, 0, 4, msgCommandAMF0, 0), 1, 2, 3, 4))
		}, violChunkHeader},
		{"continuation of nothing", func(r *rawClient) error {
			return r.write(append(chunkHeader(3, 5, 0, 0, 0, 0), make([]byte, 64)...))
		}, violChunkHeader},
		{"empty message", func(r *rawClient) error {
			return r.write(chunkHeader(0, 3, 0, 0, msgCommandAMF0, 0))
		}, violChunkHeader},
		{"12 MiB video message", func(r *rawClient) error {
			return r.write(chunkHeader(0, 6, 0, 12<<20, msgVideo, 1))
		}, violMessageSize},
		{"100 KiB command", func(r *rawClient) error {
			return r.write(chunkHeader(0, 3, 0, 100<<10, msgCommandAMF0, 0))
		}, violMessageSize},
		{"strict array of 2^25 elements in createStream", func(r *rawClient) error {
			return r.send(3, msgCommandAMF0, 0, 0, strictArray(1<<25))
		}, violAMF},
		{"AMF nested 1000 deep", func(r *rawClient) error {
			return r.send(3, msgCommandAMF0, 0, 0, append(amf(t, "connect", 1.0), nestedAMF(1000)...))
		}, violAMF},
		{"window acknowledgement size 1", func(r *rawClient) error {
			return r.send(2, msgWinAckSize, 0, 0, []byte{0, 0, 0, 1})
		}, violAckWindow},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := startHub(t, nil)
			r := dialRaw(t, ts.addr, "").handshake()
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			_ = tt.attack(r) // the server may close the connection mid-attack
			if !r.closedWithin(3 * time.Second) {
				t.Fatal("the server kept the connection open")
			}
			var after runtime.MemStats
			runtime.ReadMemStats(&after)
			if grew := after.TotalAlloc - before.TotalAlloc; grew > 24<<20 {
				t.Errorf("the server allocated %d MiB for the attack", grew>>20)
			}
			want := fmt.Sprintf(`onair_ingest_protocol_violations_total{reason=%q} 1`, tt.reason)
			waitFor(t, "violation metric", 2*time.Second, func() bool { return strings.Contains(ts.metrics(), want) })
			if !strings.Contains(ts.logs.String(), "rtmp connection refused") {
				t.Error("no log line says why the connection was refused")
			}
			if strings.Contains(ts.logs.String(), "Panic") {
				t.Error("go-rtmp panicked")
			}
		})
	}
}

// floodChunkStreams starts a message of size+1 bytes on each of n chunk
// streams and sends size bytes (whole chunks) of it, so nothing completes.
func floodChunkStreams(r *rawClient, n, size int) error {
	buf := make([]byte, 64<<10)
	for cs := range n {
		id := 4 + cs
		if err := r.write(chunkHeader(0, id, 0, uint32(size+1), msgVideo, 1)); err != nil {
			return err
		}
		for sent := 0; sent < size; {
			k := min(len(buf), size-sent, r.chunkSize-sent%r.chunkSize)
			if sent > 0 && sent%r.chunkSize == 0 {
				if err := r.write(chunkHeader(3, id, 0, 0, 0, 0)); err != nil {
					return err
				}
			}
			if err := r.write(buf[:k]); err != nil {
				return err
			}
			sent += k
		}
	}
	return nil
}

// A publisher may do whatever an encoder does right up to the limits.
func TestChunkGuardAllowsEncoders(t *testing.T) {
	ts := startHub(t, nil)
	r := dialRaw(t, ts.addr, "").handshake()
	if err := r.setChunkSize(MaxPeerChunkSize); err != nil {
		t.Fatal(err)
	}
	if err := r.send(2, msgWinAckSize, 0, 0, binary.BigEndian.AppendUint32(nil, 2500000)); err != nil {
		t.Fatal(err)
	}
	if err := r.connectPublish("live", testKey); err != nil {
		t.Fatal(err)
	}
	if !r.readUntil("NetStream.Publish.Start", 3*time.Second) {
		t.Fatalf("no publish confirmation\n%s", ts.logs.String())
	}
	// A keyframe-sized message after publishing, beyond the pre-publish budget.
	frame := append([]byte{0x17, 1, 0, 0, 0}, make([]byte, 1<<20)...)
	if err := r.send(6, msgVideo, 1, 0, frame); err != nil {
		t.Fatal(err)
	}
	if r.closedWithin(300 * time.Millisecond) {
		t.Fatalf("connection closed\n%s", ts.logs.String())
	}
	if strings.Contains(ts.metrics(), "protocol_violations_total{") {
		t.Fatalf("violation counted:\n%s", ts.metrics())
	}
}
