package segmenter

import (
	"bytes"
	"testing"

	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4"
	"github.com/bluenviron/mediacommon/v2/pkg/formats/fmp4/seekablebuffer"
)

// TestFragmentMatchesMediacommon holds onair's hand-written fragment writer
// to mediacommon's fmp4.Part.Marshal byte for byte, and reads it back with
// mediacommon's parser.
func TestFragmentMatchesMediacommon(t *testing.T) {
	video := []sample{
		{dts: 0, ptsOff: 6000, dur: 3000, sync: true, nalus: [][]byte{{0x65, 1, 2, 3}, {0x06, 9}}},
		{dts: 3000, ptsOff: 9000, dur: 3000, nalus: [][]byte{{0x41, 4, 5}}},
		{dts: 6000, ptsOff: -3000, dur: 3003, nalus: [][]byte{{0x01, 6}}},
	}
	audio := []sample{
		{dts: 1024, dur: 1024, sync: true, frame: []byte{0x21, 0x10, 0x04}},
		{dts: 2048, dur: 1024, sync: true, frame: []byte{0x21, 0x10}},
	}
	cases := []struct {
		name string
		runs []trackRun
	}{
		{"video and audio", []trackRun{{id: videoTrackID, samples: video}, {id: audioTrackID, samples: audio}}},
		{"video only", []trackRun{{id: videoTrackID, samples: video}}},
		{"keyframes only, no offsets", []trackRun{{id: videoTrackID, samples: []sample{{dts: 90000, dur: 3000, sync: true, nalus: [][]byte{{0x65}}}}}}},
		{"audio only", []trackRun{{id: audioTrackID, samples: audio}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := marshalFragment(7, tc.runs)

			ref := fmp4.Part{SequenceNumber: 7}
			for _, r := range tc.runs {
				pt := &fmp4.PartTrack{ID: int(r.id), BaseTime: uint64(r.samples[0].dts)}
				for _, s := range r.samples {
					payload := s.frame
					if s.nalus != nil {
						payload = nil
						for _, u := range s.nalus {
							payload = append(payload, byte(len(u)>>24), byte(len(u)>>16), byte(len(u)>>8), byte(len(u)))
							payload = append(payload, u...)
						}
					}
					pt.Samples = append(pt.Samples, &fmp4.Sample{Duration: s.dur, PTSOffset: s.ptsOff, IsNonSyncSample: !s.sync, Payload: payload})
				}
				ref.Tracks = append(ref.Tracks, pt)
			}
			var buf seekablebuffer.Buffer
			if err := ref.Marshal(&buf); err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, buf.Bytes()) {
				t.Fatalf("fragment differs from mediacommon's:\n got %x\nwant %x", got, buf.Bytes())
			}
			var parts fmp4.Parts
			if err := parts.Unmarshal(got); err != nil {
				t.Fatalf("mediacommon cannot read it: %v", err)
			}
			if len(parts) != 1 || len(parts[0].Tracks) != len(tc.runs) {
				t.Fatalf("read back %d parts", len(parts))
			}
		})
	}
}
