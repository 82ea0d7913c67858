package ingest

import (
	"encoding/binary"
	"errors"
	"math"
	"unicode/utf8"
)

// go-rtmp decodes AMF0 commands and data messages with go-amf0 (v0.1.0), which
// allocates a strict array's declared length before reading any element (a
// 5-byte value asks for up to 32 GiB, which no recover catches), recurses once
// per nesting level, and panics or reads values at the wrong offset on some
// inputs (a nested object or array in the second property of an ECMA array;
// an object where a string or number is expected). checkAMFCommand and
// checkAMFData replay the decoding go-rtmp is about to do, value by value,
// with go-amf0's rules for each destination type, and refuse a message that
// would allocate more elements than it has bytes, nest too deep, or panic.
// Messages go-amf0 merely rejects pass: go-rtmp handles those errors itself.

// maxAMFDepth is how deeply AMF values may nest; real commands nest two levels.
const maxAMFDepth = 32

// amfDest is the kind of Go value go-amf0 decodes into, which decides what it does with each marker.
type amfDest uint8

const (
	destNil    amfDest = iota // an empty interface{}
	destHeld                  // an interface{} already holding a value (go-amf0 reuses an ECMA array's value slot)
	destMap                   // a map[string]interface{}
	destString                // a string
	destNumber                // an int64, uint32 or float64
)

// errAMFStop means go-amf0 returns an error here: decoding ends, harmlessly.
var errAMFStop = errors.New("go-amf0 stops")

// amfReplay walks an AMF0 message as go-amf0 would decode it.
type amfReplay struct {
	b     []byte
	pos   int
	elems int // strict-array elements allocated so far
	depth int
	str   string // the last string decoded into a string destination
}

// checkAMFCommand checks an AMF0 command message: name, transaction ID and the
// arguments go-rtmp decodes for that command.
func checkAMFCommand(b []byte) error {
	r := &amfReplay{b: b}
	err := r.command()
	return r.verdict(err)
}

// checkAMFData checks an AMF0 data message (@setDataFrame, onMetaData, ...).
func checkAMFData(b []byte) error {
	r := &amfReplay{b: b}
	err := r.data()
	return r.verdict(err)
}

func (r *amfReplay) verdict(err error) error {
	if err == nil || errors.Is(err, errAMFStop) {
		return nil
	}
	return err
}

// commandArgs are the destinations go-rtmp's body decoder of each command uses.
var commandArgs = map[string][]amfDest{
	"connect":         {destMap},
	"createStream":    {destNil},
	"deleteStream":    {destNil, destNumber},
	"publish":         {destNil, destString, destString},
	"play":            {destNil, destString, destNumber},
	"releaseStream":   {destNil, destString},
	"FCPublish":       {destNil, destString},
	"FCUnpublish":     {destNil, destString},
	"getStreamLength": {destNil, destString},
	"ping":            {destNil},
	"closeStream":     {destNil},
}

func (r *amfReplay) command() error {
	if _, err := r.value(destString); err != nil {
		return err
	}
	name := r.str
	if _, err := r.value(destNumber); err != nil {
		return err
	}
	if name == "_result" || name == "_error" {
		return nil // go-rtmp matches these to its transactions without decoding
	}
	args, known := commandArgs[name]
	if !known {
		return r.rest()
	}
	for _, d := range args {
		if _, err := r.value(d); err != nil {
			return err
		}
	}
	return nil
}

func (r *amfReplay) data() error {
	r.str = ""
	if _, err := r.value(destString); err != nil {
		return err
	}
	if r.str == "@setDataFrame" {
		return nil // go-rtmp copies the rest; onair reads it with its own parser
	}
	return r.rest()
}

// rest replays go-rtmp's decoder for unknown commands and data: values into
// fresh interfaces until one fails.
func (r *amfReplay) rest() error {
	for {
		if _, err := r.value(destNil); err != nil {
			return err
		}
	}
}

func (r *amfReplay) read(n int) ([]byte, error) {
	if len(r.b)-r.pos < n {
		r.pos = len(r.b)
		return nil, errAMFStop
	}
	b := r.b[r.pos : r.pos+n]
	r.pos += n
	return b, nil
}

func (r *amfReplay) u16() (int, error) {
	b, err := r.read(2)
	if err != nil {
		return 0, err
	}
	return int(binary.BigEndian.Uint16(b)), nil
}

func (r *amfReplay) u32() (uint32, error) {
	b, err := r.read(4)
	if err != nil {
		return 0, err
	}
	return binary.BigEndian.Uint32(b), nil
}

// utf8String reads a 16-bit-length string as go-amf0's readUTF8 does.
func (r *amfReplay) utf8String() (string, error) {
	n, err := r.u16()
	if err != nil || n == 0 {
		return "", err
	}
	b, err := r.read(n)
	if err != nil {
		return "", err
	}
	if !utf8.Valid(b) {
		return "", errAMFStop
	}
	return string(b), nil
}

// value replays one go-amf0 Decode into a destination of kind d and returns
// the kind the destination holds afterwards.
func (r *amfReplay) value(d amfDest) (amfDest, error) {
	r.depth++
	defer func() { r.depth-- }()
	if r.depth > maxAMFDepth {
		return d, violationf(violAMF, "AMF values nested deeper than %d", maxAMFDepth)
	}
	m, err := r.read(1)
	if err != nil {
		return d, err
	}
	isIface := d == destNil || d == destHeld
	switch m[0] {
	case 0x00: // number
		if _, err := r.read(8); err != nil {
			return d, err
		}
		if isIface || d == destNumber {
			return settled(d), nil
		}
	case 0x01: // boolean
		if _, err := r.read(1); err != nil {
			return d, err
		}
		if isIface {
			return destHeld, nil
		}
	case 0x02: // string
		s, err := r.utf8String()
		if err != nil {
			return d, err
		}
		if isIface || d == destString {
			if d == destString {
				r.str = s
			}
			return settled(d), nil
		}
	case 0x03: // object
		if d == destNil || d == destMap {
			return settled(d), r.properties(false)
		}
		// go-amf0 has nowhere to put the values: it reads the keys only, and so
		// takes the values' bytes for keys.
		return d, r.keysOnly()
	case 0x05: // null
		switch d {
		case destMap:
			return destMap, nil
		case destNil, destHeld:
			return destNil, nil
		}
	case 0x08: // ECMA array
		switch d {
		case destNil, destMap:
			if _, err := r.u32(); err != nil { // the count, which go-amf0 ignores
				return d, err
			}
			return settled(d), r.properties(true)
		case destHeld:
			// go-amf0 reads the count, then panics making the slot's value.
			if _, err := r.u32(); err != nil {
				return d, err
			}
			return d, violationf(violAMF, "AMF ECMA array where go-amf0 panics")
		}
	case 0x0a: // strict array
		if !isIface {
			break
		}
		n, err := r.u32()
		if err != nil {
			return d, err
		}
		if n > math.MaxInt32 {
			break
		}
		if d == destHeld {
			if n > 0 {
				return d, violationf(violAMF, "AMF strict array where go-amf0 panics")
			}
			return d, nil
		}
		r.elems += int(n)
		if r.elems > len(r.b) {
			return d, violationf(violAMF, "AMF strict arrays declare %d elements in a %d-byte message", r.elems, len(r.b))
		}
		for range n {
			if _, err := r.value(destNil); err != nil {
				return d, err
			}
		}
		return destHeld, nil
	case 0x0b: // date
		if !isIface {
			break
		}
		if _, err := r.read(10); err != nil {
			return d, err
		}
		return destHeld, nil
	}
	// Every other marker, or a marker its destination cannot take: go-amf0 returns an error.
	return d, errAMFStop
}

// settled is what a destination holds after go-amf0 stored a value in it.
func settled(d amfDest) amfDest {
	if d == destNil {
		return destHeld
	}
	return d
}

// properties replays an object's or ECMA array's key/value pairs into a map.
// go-amf0 gives each object property a fresh value but reuses one value slot
// for all of an ECMA array's properties.
func (r *amfReplay) properties(ecma bool) error {
	slot := destNil
	for {
		key, err := r.utf8String()
		if err != nil {
			return err
		}
		if key == "" {
			end, err := r.read(1)
			if err != nil {
				return err
			}
			if end[0] != 0x09 {
				return errAMFStop
			}
			return nil
		}
		d := destNil
		if ecma {
			d = slot
		}
		got, err := r.value(d)
		if err != nil {
			return err
		}
		if ecma {
			slot = got
		}
	}
}

// keysOnly replays go-amf0 reading an object into a destination that is not a map.
func (r *amfReplay) keysOnly() error {
	for {
		key, err := r.utf8String()
		if err != nil {
			return err
		}
		if key == "" {
			end, err := r.read(1)
			if err != nil {
				return err
			}
			if end[0] != 0x09 {
				return errAMFStop
			}
			return nil
		}
	}
}
