package ingest

import (
	"encoding/binary"
	"math"
)

// parseMetadataHints reads an onMetaData payload ("onMetaData", then an object
// or ECMA array) and reports whether it announces video and audio. It reads
// the AMF0 bytes itself rather than through go-amf0, which allocates what a
// strict array declares before reading it and panics on nested arrays in
// ECMA arrays: every length here is checked against the bytes left, nesting
// is bounded, and nothing is kept but the two answers.
func parseMetadataHints(payload []byte) (video, audio, ok bool) {
	r := amfReader{b: payload}
	if r.u8() != 0x02 || r.str16() != "onMetaData" {
		return false, false, false
	}
	switch r.u8() {
	case 0x08:
		r.u32() // ECMA array count, not to be trusted
	case 0x03:
	default:
		return false, false, false
	}
	for !r.bad {
		key := r.str16()
		if key == "" {
			if r.u8() != 0x09 || r.bad {
				return false, false, false
			}
			return video, audio, true
		}
		switch key {
		case "videocodecid":
			video = r.present()
		case "audiocodecid":
			audio = r.present()
		default:
			r.skip(1)
		}
	}
	return false, false, false
}

// amfReader reads AMF0 values from untrusted bytes; once it runs out or finds
// something malformed it sets bad and every later read returns zero values.
type amfReader struct {
	b   []byte
	bad bool
}

func (r *amfReader) take(n int) []byte {
	if r.bad || n < 0 || n > len(r.b) {
		r.bad = true
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *amfReader) u8() byte {
	if b := r.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *amfReader) u16() int {
	if b := r.take(2); b != nil {
		return int(binary.BigEndian.Uint16(b))
	}
	return 0
}

func (r *amfReader) u32() uint32 {
	if b := r.take(4); b != nil {
		return binary.BigEndian.Uint32(b)
	}
	return 0
}

func (r *amfReader) str16() string { return string(r.take(r.u16())) }

// present reads a codec ID value: a non-zero number (FLV codec ID) or a
// non-empty string (Enhanced RTMP FourCC) says the track is there.
func (r *amfReader) present() bool {
	m, num, str := r.value(1)
	return (m == 0x00 && num != 0 && !math.IsNaN(num)) || (m == 0x02 && str != "")
}

// skip reads past one value.
func (r *amfReader) skip(depth int) { r.value(depth) }

// value reads one value at nesting depth and returns its marker, and its
// content for a number or a string; containers are read through and dropped.
func (r *amfReader) value(depth int) (marker byte, num float64, str string) {
	if depth > maxAMFDepth {
		r.bad = true
		return 0, 0, ""
	}
	m := r.u8()
	switch m {
	case 0x00: // number
		if b := r.take(8); b != nil {
			num = math.Float64frombits(binary.BigEndian.Uint64(b))
		}
	case 0x01: // boolean
		r.take(1)
	case 0x02: // string
		str = r.str16()
	case 0x03: // object
		r.properties(depth)
	case 0x05, 0x06: // null, undefined
	case 0x07: // reference
		r.take(2)
	case 0x08: // ECMA array
		r.u32()
		r.properties(depth)
	case 0x0a: // strict array
		n := r.u32()
		if int64(n) > int64(len(r.b)) { // each element takes at least one byte
			r.bad = true
		}
		for i := uint32(0); i < n && !r.bad; i++ {
			r.value(depth + 1)
		}
	case 0x0b: // date
		r.take(10)
	case 0x0c, 0x0f: // long string, XML document
		r.take(int(r.u32()))
	case 0x10: // typed object
		r.str16()
		r.properties(depth)
	default:
		r.bad = true
	}
	return m, num, str
}

// properties reads an object's key/value pairs up to its end marker.
func (r *amfReader) properties(depth int) {
	for !r.bad {
		if r.str16() == "" {
			if r.u8() != 0x09 {
				r.bad = true
			}
			return
		}
		r.value(depth + 1)
	}
}
