package moderation

import "github.com/onairhq/onair/ingest"

// startCode prefixes every NAL unit written to the decoder.
var startCode = []byte{0, 0, 0, 1}

// Access unit delimiters appended after each keyframe. The raw H.264/HEVC
// demuxer only knows a frame is complete when it sees the start of the next
// one; a trailing AUD is that start, so ffmpeg hands the frame to the decoder
// at once instead of waiting for the next keyframe (seconds later).
var (
	audH264 = []byte{0x09, 0xf0}
	audHEVC = []byte{0x46, 0x01, 0x50}
)

// annexB renders a sample as a self-contained Annex-B byte stream: the
// track's parameter sets, then each frame's NAL units followed by an access
// unit delimiter. In-band parameter sets are left out: the track's were
// rewritten for the decoder (see withoutReordering), and new ones would start
// a new broadcast.
func annexB(track *ingest.VideoTrack, smp Sample) []byte {
	aud := audH264
	if track.Codec == ingest.CodecHEVC {
		aud = audHEVC
	}
	n := 0
	for _, ps := range [][]byte{track.VPS, track.SPS, track.PPS} {
		n += len(startCode) + len(ps)
	}
	for _, au := range smp.Frames {
		for _, nalu := range au.NALUs {
			n += len(startCode) + len(nalu)
		}
		n += len(startCode) + len(aud)
	}
	out := make([]byte, 0, n)
	add := func(nalu []byte) {
		if len(nalu) > 0 {
			out = append(out, startCode...)
			out = append(out, nalu...)
		}
	}
	if track.Codec == ingest.CodecHEVC {
		add(track.VPS)
	}
	add(track.SPS)
	add(track.PPS)
	for _, au := range smp.Frames {
		for _, nalu := range au.NALUs {
			if isAUDOrParameterSet(track.Codec, nalu) {
				continue // one delimiter, after the frame, is all the demuxer needs
			}
			add(nalu)
		}
		add(aud)
	}
	return out
}

// disposableH264 reports whether no other frame refers to an H.264 frame:
// every slice of it has nal_ref_idc 0.
func disposableH264(au ingest.AccessUnit) bool {
	slices := 0
	for _, nalu := range au.NALUs {
		if len(nalu) == 0 {
			continue
		}
		if t := nalu[0] & 0x1f; t >= 1 && t <= 5 {
			if nalu[0]>>5&3 != 0 {
				return false
			}
			slices++
		}
	}
	return slices > 0
}

func isAUDOrParameterSet(codec ingest.Codec, nalu []byte) bool {
	if len(nalu) == 0 {
		return true
	}
	if codec == ingest.CodecHEVC {
		t := (nalu[0] >> 1) & 0x3f
		return t >= 32 && t <= 35 // VPS, SPS, PPS, AUD
	}
	t := nalu[0] & 0x1f
	return t == 7 || t == 8 || t == 9 // SPS, PPS, AUD
}

// decoderTrack returns a copy of track whose SPS declares no frame
// reordering, and whether it does so explicitly (see withoutReordering):
// only then can frames between keyframes be decoded from a sample.
func decoderTrack(track *ingest.VideoTrack) (*ingest.VideoTrack, bool, error) {
	t := *track
	sps, explicit, err := withoutReordering(t.Codec, t.SPS)
	if err != nil {
		return nil, false, err
	}
	t.SPS = sps
	return &t, explicit, nil
}
