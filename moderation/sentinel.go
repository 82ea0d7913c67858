package moderation

// A sample is followed into the decoder by a sentinel: a tiny H.264 picture
// of its own (16×16, one uncompressed I_PCM macroblock, its own parameter
// sets) whose image the Decoder learns when it starts. Reading images up to
// the sentinel's takes exactly what the sample gave, whatever its frames
// were: a publisher whose timestamps do not match its frame order cannot
// make the Decoder wait for an image that never comes, or leave one behind
// for the next sample. The sentinel is an IDR picture, so the decoder
// outputs it at once after the sample's last image.

// sentinelH264 returns the sentinel as an Annex-B stream ending with an
// access unit delimiter.
func sentinelH264() []byte {
	var out []byte
	nal := func(header byte, w *bitWriter) {
		// rbsp_trailing_bits
		w.bit(1)
		for w.n%8 != 0 {
			w.bit(0)
		}
		out = append(out, startCode...)
		out = append(out, header)
		out = append(out, escapeRBSP(w.b)...)
	}
	ue := func(w *bitWriter, v int) {
		for _, b := range ueBits(v) {
			w.bit(b)
		}
	}
	u := func(w *bitWriter, n, v int) {
		for i := n - 1; i >= 0; i-- {
			w.bit(byte(v >> i & 1))
		}
	}

	// SPS: Baseline, level 1.0, one 16×16 macroblock, no VUI.
	sps := &bitWriter{}
	u(sps, 8, 66)   // profile_idc
	u(sps, 8, 0xc0) // constraint_set0/1 flags
	u(sps, 8, 10)   // level_idc
	ue(sps, 1)      // seq_parameter_set_id: 1, apart from a stream's usual 0
	ue(sps, 0)      // log2_max_frame_num_minus4
	ue(sps, 2)      // pic_order_cnt_type
	ue(sps, 1)      // max_num_ref_frames
	u(sps, 1, 0)    // gaps_in_frame_num_value_allowed_flag
	ue(sps, 0)      // pic_width_in_mbs_minus1
	ue(sps, 0)      // pic_height_in_map_units_minus1
	u(sps, 1, 1)    // frame_mbs_only_flag
	u(sps, 1, 1)    // direct_8x8_inference_flag
	u(sps, 1, 0)    // frame_cropping_flag
	u(sps, 1, 0)    // vui_parameters_present_flag
	nal(0x67, sps)

	pps := &bitWriter{}
	ue(pps, 1)   // pic_parameter_set_id
	ue(pps, 1)   // seq_parameter_set_id
	u(pps, 1, 0) // entropy_coding_mode_flag: CAVLC
	u(pps, 1, 0) // bottom_field_pic_order_in_frame_present_flag
	ue(pps, 0)   // num_slice_groups_minus1
	ue(pps, 0)   // num_ref_idx_l0_default_active_minus1
	ue(pps, 0)   // num_ref_idx_l1_default_active_minus1
	u(pps, 1, 0) // weighted_pred_flag
	u(pps, 2, 0) // weighted_bipred_idc
	ue(pps, 0)   // pic_init_qp_minus26 (se 0)
	ue(pps, 0)   // pic_init_qs_minus26 (se 0)
	ue(pps, 0)   // chroma_qp_index_offset (se 0)
	u(pps, 1, 1) // deblocking_filter_control_present_flag
	u(pps, 1, 0) // constrained_intra_pred_flag
	u(pps, 1, 0) // redundant_pic_cnt_present_flag
	nal(0x68, pps)

	// IDR slice holding one I_PCM macroblock: a pattern no camera gives.
	idr := &bitWriter{}
	ue(idr, 0)   // first_mb_in_slice
	ue(idr, 7)   // slice_type: I, all slices
	ue(idr, 1)   // pic_parameter_set_id
	u(idr, 4, 0) // frame_num
	ue(idr, 0)   // idr_pic_id
	u(idr, 1, 0) // no_output_of_prior_pics_flag
	u(idr, 1, 0) // long_term_reference_flag
	ue(idr, 0)   // slice_qp_delta (se 0)
	ue(idr, 1)   // disable_deblocking_filter_idc
	ue(idr, 25)  // mb_type: I_PCM
	for idr.n%8 != 0 {
		idr.bit(0) // pcm_alignment_zero_bit
	}
	for i := 0; i < 256; i++ { // luma: a diagonal ramp with a checker
		v := 0x20 + (i%16+i/16)*6
		if (i%16/4+i/64)%2 == 1 {
			v = 0xe0 - v/2
		}
		u(idr, 8, v)
	}
	for i := 0; i < 128; i++ { // chroma: Cb rising, Cr falling
		u(idr, 8, 0x40+i)
	}
	nal(0x65, idr)

	out = append(out, startCode...)
	return append(out, audH264...)
}
