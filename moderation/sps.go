package moderation

import (
	"errors"
	"fmt"

	"github.com/onairhq/onair/ingest"
)

// The decoder is fed only keyframes, so no frame ever needs reordering; but
// an SPS that allows B-frames makes ffmpeg hold back that many frames before
// output, and with one keyframe every few seconds that means seconds of delay.
// withoutReordering rewrites the SPS to declare zero reordered frames, so
// each keyframe comes out as soon as it is decoded. Everything else in the
// SPS is copied bit for bit.
func withoutReordering(codec ingest.Codec, sps []byte) ([]byte, error) {
	hdr := 1
	if codec == ingest.CodecHEVC {
		hdr = 2
	}
	if len(sps) <= hdr {
		return nil, errors.New("rewriting SPS: too short")
	}
	rbsp := unescapeRBSP(sps[hdr:])
	r := &bitReader{b: rbsp}
	var fields []bitRange
	var err error
	if codec == ingest.CodecHEVC {
		fields, err = hevcReorderFields(r)
	} else {
		fields, err = h264ReorderFields(r)
	}
	if err != nil {
		return nil, fmt.Errorf("rewriting SPS: %w", err)
	}
	if len(fields) == 0 {
		return sps, nil
	}
	out, err := replaceWithZeroUE(rbsp, fields)
	if err != nil {
		return nil, fmt.Errorf("rewriting SPS: %w", err)
	}
	return append(append([]byte(nil), sps[:hdr]...), escapeRBSP(out)...), nil
}

// bitRange is a field's position in an RBSP, in bits: [start, end).
type bitRange struct{ start, end int }

func h264ReorderFields(r *bitReader) ([]bitRange, error) {
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
	r.ue()           // max_num_ref_frames
	r.u(1)           // gaps_in_frame_num_value_allowed_flag
	r.ue()           // pic_width_in_mbs_minus1
	r.ue()           // pic_height_in_map_units_minus1
	if r.u(1) == 0 { // frame_mbs_only_flag
		r.u(1)
	}
	r.u(1)           // direct_8x8_inference_flag
	if r.u(1) == 1 { // frame_cropping_flag
		r.ue()
		r.ue()
		r.ue()
		r.ue()
	}
	if r.u(1) == 0 { // vui_parameters_present_flag
		return nil, r.err // no stated reordering: ffmpeg assumes none
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
	r.u(1)           // pic_struct_present_flag
	if r.u(1) == 0 { // bitstream_restriction_flag
		return nil, r.err
	}
	r.u(1) // motion_vectors_over_pic_boundaries_flag
	r.ue() // max_bytes_per_pic_denom
	r.ue() // max_bits_per_mb_denom
	r.ue() // log2_max_mv_length_horizontal
	r.ue() // log2_max_mv_length_vertical
	start := r.pos
	r.ue() // max_num_reorder_frames
	if r.err != nil {
		return nil, r.err
	}
	return []bitRange{{start, r.pos}}, nil
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

func hevcReorderFields(r *bitReader) ([]bitRange, error) {
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
	var fields []bitRange
	for i := first; i <= maxSub && r.err == nil; i++ {
		r.ue() // sps_max_dec_pic_buffering_minus1
		start := r.pos
		r.ue() // sps_max_num_reorder_pics
		fields = append(fields, bitRange{start, r.pos})
		r.ue() // sps_max_latency_increase_plus1
	}
	if r.err != nil {
		return nil, r.err
	}
	return fields, nil
}

// replaceWithZeroUE writes rbsp with each field replaced by ue(v)=0 (one bit)
// and the trailing bits redone for the new length.
func replaceWithZeroUE(rbsp []byte, fields []bitRange) ([]byte, error) {
	stop := -1 // position of rbsp_stop_one_bit: the last 1 bit
	for i := len(rbsp)*8 - 1; i >= 0; i-- {
		if rbsp[i/8]>>(7-i%8)&1 == 1 {
			stop = i
			break
		}
	}
	if stop < 0 || stop < fields[len(fields)-1].end {
		return nil, errors.New("no trailing bits")
	}
	w := &bitWriter{}
	pos := 0
	for _, f := range fields {
		w.copyBits(rbsp, pos, f.start)
		w.bit(1) // ue(v) = 0
		pos = f.end
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
