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
	if track.Codec == ingest.CodecAV1 {
		return obuStream(track, smp)
	}
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

// Temporal delimiter OBU: it starts every AV1 temporal unit. The OBU
// demuxer hands a temporal unit to the decoder when it sees the next one,
// and ffmpeg reads a few packets ahead of what it decodes, so the sample is
// followed by empty temporal units (measured with ffmpeg 5.1: four are
// needed before the first frame comes out; eight are sent).
var obuTemporalDelimiter = []byte{0x12, 0x00}

const obuTrailingDelimiters = 8

// obuStream renders an AV1 sample as a low-overhead OBU stream: each frame
// a temporal unit with the track's sequence header in front, then a
// temporal delimiter. OBUs from ingest come without their size fields.
func obuStream(track *ingest.VideoTrack, smp Sample) []byte {
	var out []byte
	for _, au := range smp.Frames {
		out = append(out, obuTemporalDelimiter...)
		out = appendOBU(out, track.SPS)
		for _, obu := range au.NALUs {
			if len(obu) == 0 {
				continue
			}
			switch obu[0] >> 3 & 0x0f {
			case 1, 2: // sequence header (the track's is first), temporal delimiter
				continue
			}
			out = appendOBU(out, obu)
		}
	}
	for range obuTrailingDelimiters {
		out = append(out, obuTemporalDelimiter...)
	}
	return out
}

// appendOBU appends obu (a header byte without extension, and its payload)
// with obu_has_size_field set and the payload's size in LEB128.
func appendOBU(out, obu []byte) []byte {
	if len(obu) == 0 {
		return out
	}
	out = append(out, obu[0]|0x02)
	for n := uint64(len(obu) - 1); ; {
		b := byte(n & 0x7f)
		if n >>= 7; n > 0 {
			out = append(out, b|0x80)
			continue
		}
		out = append(out, b)
		break
	}
	return append(out, obu[1:]...)
}

// decoderTrack returns a copy of track whose SPS declares no frame
// reordering, and whether it does so explicitly (see withoutReordering):
// only then can frames between keyframes be decoded from a sample.
func decoderTrack(track *ingest.VideoTrack) (*ingest.VideoTrack, bool, error) {
	if track.Codec == ingest.CodecAV1 {
		return track, false, nil // AV1 does not reorder what it outputs; samples are keyframes
	}
	t := *track
	sps, explicit, err := withoutReordering(t.Codec, t.SPS)
	if err != nil {
		return nil, false, err
	}
	t.SPS = sps
	return &t, explicit, nil
}
