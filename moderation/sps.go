package moderation

import (
	"errors"
	"fmt"

	"github.com/onairhq/onair/ingest"
)

// The decoder is fed samples that start at a keyframe; an SPS that allows
// B-frames makes ffmpeg hold back that many frames before output, and with
// one sample every few seconds that means seconds of delay. withoutReordering
// rewrites the SPS to declare zero reordered frames, so each frame comes out
// as soon as it is decoded (and a frame shown before one already output is
// dropped). Everything else in the SPS is copied bit for bit.
//
// For H.264 the declaration must be explicit: without a VUI bitstream
// restriction ffmpeg guesses the reordering from the frames and starts
// holding frames back once it sees a B-frame. So a restriction is added
// where the SPS has none, and explicit reports that the rewritten SPS
// holds one (HEVC states its reordering in every SPS, but ffmpeg's HEVC
// decoder still holds frames back, so explicit is false for it).
func withoutReordering(codec ingest.Codec, sps []byte) (out []byte, explicit bool, err error) {
	hdr := 1
	if codec == ingest.CodecHEVC {
		hdr = 2
	}
	if len(sps) <= hdr {
		return nil, false, errors.New("rewriting SPS: too short")
	}
	rbsp := unescapeRBSP(sps[hdr:])
	r := &bitReader{b: rbsp}
	var edits []bitEdit
	if codec == ingest.CodecHEVC {
		edits, err = hevcReorderFields(r)
	} else {
		edits, err = h264ReorderFields(r)
		explicit = err == nil
	}
	if err != nil {
		return nil, false, fmt.Errorf("rewriting SPS: %w", err)
	}
	if len(edits) == 0 {
		return sps, explicit, nil
	}
	rewritten, err := applyEdits(rbsp, edits)
	if err != nil {
		return nil, false, fmt.Errorf("rewriting SPS: %w", err)
	}
	return append(append([]byte(nil), sps[:hdr]...), escapeRBSP(rewritten)...), explicit, nil
}

// bitEdit replaces the bits [start, end) of an RBSP with bits (one 0 or 1 per byte).
type bitEdit struct {
	start, end int
	bits       []byte
}

// ueBits returns the bits of the Exp-Golomb code of v.
func ueBits(v int) []byte {
	v++
	n := 0
	for x := v; x > 1; x >>= 1 {
		n++
	}
	bits := make([]byte, 0, 2*n+1)
	for range n {
		bits = append(bits, 0)
	}
	for i := n; i >= 0; i-- {
		bits = append(bits, byte(v>>i&1))
	}
	return bits
}

// h264Restriction returns the bits of a VUI bitstream restriction that
// declares no reordering and otherwise the values H.264 infers without one.
func h264Restriction(maxRefFrames int) []byte {
	bits := []byte{1} // motion_vectors_over_pic_boundaries_flag
	for _, v := range []int{2, 1, 15, 15, 0, maxRefFrames} {
		// max_bytes_per_pic_denom, max_bits_per_mb_denom,
		// log2_max_mv_length_horizontal and _vertical,
		// max_num_reorder_frames, max_dec_frame_buffering
		bits = append(bits, ueBits(v)...)
	}
	return bits
}

// h264Layout is where an H.264 SPS says what withoutReordering rewrites, in
// bits of its RBSP; -1 where the SPS has no such field.
type h264Layout struct {
	vuiFlag         int // vui_parameters_present_flag
	restrictionFlag int // bitstream_restriction_flag
	reorder         [2]int
	maxRefFrames    int
}

// h264ReorderFields returns the edits that make an H.264 SPS state no reordering.
func h264ReorderFields(r *bitReader) ([]bitEdit, error) {
	l, err := parseH264Layout(r)
	switch {
	case err != nil:
		return nil, err
	case l.restrictionFlag < 0: // no VUI
		// A VUI of nothing but the restriction: eight flags off (aspect
		// ratio, overscan, video signal, chroma location, timing, NAL and
		// VCL HRD, pic_struct), then bitstream_restriction_flag.
		bits := append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 1}, h264Restriction(l.maxRefFrames)...)
		return []bitEdit{{l.vuiFlag, l.vuiFlag + 1, bits}}, nil
	case l.reorder[0] < 0: // a VUI without a restriction
		return []bitEdit{{l.restrictionFlag, l.restrictionFlag + 1, append([]byte{1}, h264Restriction(l.maxRefFrames)...)}}, nil
	}
	return []bitEdit{{l.reorder[0], l.reorder[1], []byte{1}}}, nil
}

// parseH264Layout reads an H.264 SPS as far as max_num_reorder_frames.
func parseH264Layout(r *bitReader) (h264Layout, error) {
	l := h264Layout{vuiFlag: -1, restrictionFlag: -1, reorder: [2]int{-1, -1}}
	profile := r.u(8)
	r.u(16) // constraint flags, level_idc
	r.ue()  // seq_parameter_set_id
	switch profile {
	case 100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135:
		chroma := r.ue()
		if chroma == 3 {
			r.u(1)
		}
		r.ue()           // bit_depth_luma_minus8
		r.ue()           // bit_depth_chroma_minus8
		r.u(1)           // qpprime_y_zero_transform_bypass_flag
		if r.u(1) == 1 { // seq_scaling_matrix_present_flag
			n := 8
			if chroma == 3 {
				n = 12
			}
			for i := 0; i < n; i++ {
				if r.u(1) == 1 {
					size := 16
					if i >= 6 {
						size = 64
					}
					last, next := 8, 8
					for j := 0; j < size; j++ {
						if next != 0 {
							next = (last + r.se() + 256) % 256
						}
						if next != 0 {
							last = next
						}
					}
				}
			}
		}
	}
	r.ue()          // log2_max_frame_num_minus4
	switch r.ue() { // pic_order_cnt_type
	case 0:
		r.ue()
	case 1:
		r.u(1)
		r.se()
		r.se()
		n := r.ue()
		for i := 0; i < n && r.err == nil; i++ {
			r.se()
		}
	}
	l.maxRefFrames = r.ue() // max_num_ref_frames
	r.u(1)                  // gaps_in_frame_num_value_allowed_flag
	r.ue()                  // pic_width_in_mbs_minus1
	r.ue()                  // pic_height_in_map_units_minus1
	if r.u(1) == 0 {        // frame_mbs_only_flag
		r.u(1)
	}
	r.u(1)           // direct_8x8_inference_flag
	if r.u(1) == 1 { // frame_cropping_flag
		r.ue()
		r.ue()
		r.ue()
		r.ue()
	}
	l.vuiFlag = r.pos
	if r.u(1) == 0 { // vui_parameters_present_flag
		return l, r.err
	}
	if r.u(1) == 1 { // aspect_ratio_info_present_flag
		if r.u(8) == 255 {
			r.u(32)
		}
	}
	if r.u(1) == 1 { // overscan_info_present_flag
		r.u(1)
	}
	if r.u(1) == 1 { // video_signal_type_present_flag
		r.u(4)
		if r.u(1) == 1 {
			r.u(24)
		}
	}
	if r.u(1) == 1 { // chroma_loc_info_present_flag
		r.ue()
		r.ue()
	}
	if r.u(1) == 1 { // timing_info_present_flag
		r.u(32)
		r.u(32)
		r.u(1)
	}
	nal := r.u(1) == 1
	if nal {
		h264HRD(r)
	}
	vcl := r.u(1) == 1
	if vcl {
		h264HRD(r)
	}
	if nal || vcl {
		r.u(1) // low_delay_hrd_flag
	}
	r.u(1) // pic_struct_present_flag
	l.restrictionFlag = r.pos
	if r.u(1) == 0 { // bitstream_restriction_flag
		return l, r.err
	}
	r.u(1) // motion_vectors_over_pic_boundaries_flag
	r.ue() // max_bytes_per_pic_denom
	r.ue() // max_bits_per_mb_denom
	r.ue() // log2_max_mv_length_horizontal
	r.ue() // log2_max_mv_length_vertical
	l.reorder[0] = r.pos
	r.ue() // max_num_reorder_frames
	l.reorder[1] = r.pos
	return l, r.err
}

func h264HRD(r *bitReader) {
	n := r.ue() // cpb_cnt_minus1
	r.u(8)      // bit_rate_scale, cpb_size_scale
	for i := 0; i <= n && r.err == nil; i++ {
		r.ue()
		r.ue()
		r.u(1)
	}
	r.u(20)
}

func hevcReorderFields(r *bitReader) ([]bitEdit, error) {
	r.u(4) // sps_video_parameter_set_id
	maxSub := r.u(3)
	r.u(1)  // sps_temporal_id_nesting_flag
	r.u(96) // general profile, tier and level
	profile := make([]bool, maxSub)
	level := make([]bool, maxSub)
	for i := 0; i < maxSub; i++ {
		profile[i] = r.u(1) == 1
		level[i] = r.u(1) == 1
	}
	if maxSub > 0 {
		for i := maxSub; i < 8; i++ {
			r.u(2)
		}
	}
	for i := 0; i < maxSub; i++ {
		if profile[i] {
			r.u(88)
		}
		if level[i] {
			r.u(8)
		}
	}
	r.ue() // sps_seq_parameter_set_id
	if r.ue() == 3 {
		r.u(1)
	}
	r.ue()           // pic_width_in_luma_samples
	r.ue()           // pic_height_in_luma_samples
	if r.u(1) == 1 { // conformance_window_flag
		r.ue()
		r.ue()
		r.ue()
		r.ue()
	}
	r.ue() // bit_depth_luma_minus8
	r.ue() // bit_depth_chroma_minus8
	r.ue() // log2_max_pic_order_cnt_lsb_minus4
	first := maxSub
	if r.u(1) == 1 { // sps_sub_layer_ordering_info_present_flag
		first = 0
	}
	var fields []bitEdit
	for i := first; i <= maxSub && r.err == nil; i++ {
		r.ue() // sps_max_dec_pic_buffering_minus1
		start := r.pos
		r.ue() // sps_max_num_reorder_pics
		fields = append(fields, bitEdit{start, r.pos, []byte{1}})
		r.ue() // sps_max_latency_increase_plus1
	}
	if r.err != nil {
		return nil, r.err
	}
	return fields, nil
}

// applyEdits writes rbsp with the edits (in bit order) applied and the
// trailing bits redone for the new length.
func applyEdits(rbsp []byte, edits []bitEdit) ([]byte, error) {
	stop := -1 // position of rbsp_stop_one_bit: the last 1 bit
	for i := len(rbsp)*8 - 1; i >= 0; i-- {
		if rbsp[i/8]>>(7-i%8)&1 == 1 {
			stop = i
			break
		}
	}
	if stop < 0 || stop < edits[len(edits)-1].end {
		return nil, errors.New("no trailing bits")
	}
	w := &bitWriter{}
	pos := 0
	for _, e := range edits {
		w.copyBits(rbsp, pos, e.start)
		for _, b := range e.bits {
			w.bit(b)
		}
		pos = e.end
	}
	w.copyBits(rbsp, pos, stop)
	w.bit(1)
	for w.n%8 != 0 {
		w.bit(0)
	}
	return w.b, nil
}

// unescapeRBSP removes emulation-prevention bytes (00 00 03 -> 00 00).
func unescapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b))
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c == 3 {
			zeros = 0
			continue
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// escapeRBSP inserts emulation-prevention bytes where a start code could appear.
func escapeRBSP(b []byte) []byte {
	out := make([]byte, 0, len(b)+len(b)/64+1)
	zeros := 0
	for _, c := range b {
		if zeros >= 2 && c <= 3 {
			out = append(out, 3)
			zeros = 0
		}
		out = append(out, c)
		if c == 0 {
			zeros++
		} else {
			zeros = 0
		}
	}
	return out
}

// bitReader reads MSB-first bits and Exp-Golomb codes; the first overrun
// sets err and makes every later read return 0.
type bitReader struct {
	b   []byte
	pos int
	err error
}

func (r *bitReader) u(n int) int {
	v := 0
	for i := 0; i < n; i++ {
		if r.pos >= len(r.b)*8 {
			r.err = errors.New("SPS truncated")
			return 0
		}
		v = v<<1 | int(r.b[r.pos/8]>>(7-r.pos%8)&1)
		r.pos++
	}
	return v
}

func (r *bitReader) ue() int {
	zeros := 0
	for r.u(1) == 0 {
		if r.err != nil || zeros > 31 {
			r.err = errors.New("bad Exp-Golomb code")
			return 0
		}
		zeros++
	}
	return (1<<zeros - 1) + r.u(zeros)
}

func (r *bitReader) se() int {
	k := r.ue()
	if k%2 == 1 {
		return (k + 1) / 2
	}
	return -k / 2
}

type bitWriter struct {
	b []byte
	n int
}

func (w *bitWriter) bit(v byte) {
	if w.n%8 == 0 {
		w.b = append(w.b, 0)
	}
	w.b[len(w.b)-1] |= v << (7 - w.n%8)
	w.n++
}

func (w *bitWriter) copyBits(src []byte, from, to int) {
	for i := from; i < to; i++ {
		w.bit(src[i/8] >> (7 - i%8) & 1)
	}
}
