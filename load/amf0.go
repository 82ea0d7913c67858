package load

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
)

// AMF0 type markers (the subset RTMP commands use).
const (
	amfNumber    = 0x00
	amfBoolean   = 0x01
	amfString    = 0x02
	amfObject    = 0x03
	amfNull      = 0x05
	amfUndefined = 0x06
	amfECMAArray = 0x08
	amfObjectEnd = 0x09
	amfStrict    = 0x0a
	amfDate      = 0x0b
	amfLongStr   = 0x0c
)

// amfProp is one property of an AMF0 object, kept in order.
type amfProp struct {
	key string
	val any
}

// amfObj is an AMF0 object or ECMA array whose property order matters on
// the wire (servers read "app" and "tcUrl" by name, but keep it tidy).
type amfObj []amfProp

// appendAMF appends the AMF0 encoding of v: float64, int, bool, string,
// nil (null) or amfObj.
func appendAMF(b []byte, v any) []byte {
	switch v := v.(type) {
	case nil:
		return append(b, amfNull)
	case float64:
		b = append(b, amfNumber)
		return binary.BigEndian.AppendUint64(b, math.Float64bits(v))
	case int:
		return appendAMF(b, float64(v))
	case bool:
		if v {
			return append(b, amfBoolean, 1)
		}
		return append(b, amfBoolean, 0)
	case string:
		if len(v) > math.MaxUint16 {
			b = append(b, amfLongStr)
			b = binary.BigEndian.AppendUint32(b, uint32(len(v)))
			return append(b, v...)
		}
		b = append(b, amfString)
		b = binary.BigEndian.AppendUint16(b, uint16(len(v)))
		return append(b, v...)
	case amfObj:
		b = append(b, amfObject)
		for _, p := range v {
			b = binary.BigEndian.AppendUint16(b, uint16(len(p.key)))
			b = append(b, p.key...)
			b = appendAMF(b, p.val)
		}
		return append(b, 0, 0, amfObjectEnd)
	}
	panic(fmt.Sprintf("appendAMF: unsupported type %T", v))
}

var errAMFShort = errors.New("AMF0 value truncated")

// maxAMFDepth bounds nesting, so a hostile peer cannot recurse us deep.
const maxAMFDepth = 16

// readAMF decodes one AMF0 value from b and returns it with the rest of b.
// Numbers are float64, objects and ECMA arrays map[string]any, strict
// arrays []any, null and undefined nil.
func readAMF(b []byte) (any, []byte, error) { return readAMFDepth(b, 0) }

func readAMFDepth(b []byte, depth int) (any, []byte, error) {
	if len(b) == 0 {
		return nil, nil, errAMFShort
	}
	if depth > maxAMFDepth {
		return nil, nil, errors.New("AMF0 value nested too deep")
	}
	marker, b := b[0], b[1:]
	switch marker {
	case amfNumber:
		if len(b) < 8 {
			return nil, nil, errAMFShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), b[8:], nil
	case amfBoolean:
		if len(b) < 1 {
			return nil, nil, errAMFShort
		}
		return b[0] != 0, b[1:], nil
	case amfString:
		return readAMFString16(b)
	case amfLongStr:
		if len(b) < 4 {
			return nil, nil, errAMFShort
		}
		n := binary.BigEndian.Uint32(b)
		if uint64(len(b)-4) < uint64(n) {
			return nil, nil, errAMFShort
		}
		return string(b[4 : 4+n]), b[4+n:], nil
	case amfNull, amfUndefined:
		return nil, b, nil
	case amfECMAArray:
		if len(b) < 4 {
			return nil, nil, errAMFShort
		}
		return readAMFProps(b[4:], depth)
	case amfObject:
		return readAMFProps(b, depth)
	case amfStrict:
		if len(b) < 4 {
			return nil, nil, errAMFShort
		}
		n := binary.BigEndian.Uint32(b)
		b = b[4:]
		if uint64(n) > uint64(len(b)) { // every value takes at least one byte
			return nil, nil, errAMFShort
		}
		out := make([]any, 0, n)
		for range n {
			v, rest, err := readAMFDepth(b, depth+1)
			if err != nil {
				return nil, nil, err
			}
			out, b = append(out, v), rest
		}
		return out, b, nil
	case amfDate:
		if len(b) < 10 {
			return nil, nil, errAMFShort
		}
		return math.Float64frombits(binary.BigEndian.Uint64(b)), b[10:], nil
	}
	return nil, nil, fmt.Errorf("AMF0 type 0x%02x not supported", marker)
}

func readAMFString16(b []byte) (string, []byte, error) {
	if len(b) < 2 {
		return "", nil, errAMFShort
	}
	n := int(binary.BigEndian.Uint16(b))
	if len(b)-2 < n {
		return "", nil, errAMFShort
	}
	return string(b[2 : 2+n]), b[2+n:], nil
}

func readAMFProps(b []byte, depth int) (any, []byte, error) {
	m := map[string]any{}
	for {
		key, rest, err := readAMFString16(b)
		if err != nil {
			return nil, nil, err
		}
		if key == "" && len(rest) > 0 && rest[0] == amfObjectEnd {
			return m, rest[1:], nil
		}
		v, rest, err := readAMFDepth(rest, depth+1)
		if err != nil {
			return nil, nil, err
		}
		m[key], b = v, rest
	}
}

// readAMFAll decodes every value in b.
func readAMFAll(b []byte) ([]any, error) {
	var out []any
	for len(b) > 0 {
		v, rest, err := readAMF(b)
		if err != nil {
			return out, err
		}
		out, b = append(out, v), rest
	}
	return out, nil
}
