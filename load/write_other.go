//go:build !linux

package load

import (
	"errors"
	"net"
	"os"
	"time"
)

// nbWriter writes with a 1 ms deadline where raw non-blocking writes are
// not wired up; lateness figures are coarser than on Linux.
type nbWriter struct {
	c net.Conn
}

func newNBWriter(c net.Conn) (*nbWriter, error) { return &nbWriter{c: c}, nil }

func (w *nbWriter) write(bufs [][]byte) (int, error) {
	_ = w.c.SetWriteDeadline(time.Now().Add(time.Millisecond))
	b := net.Buffers(bufs)
	n, err := b.WriteTo(w.c)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		err = nil
	}
	return int(n), err
}

// cpuTime is not measured on this system.
func cpuTime() time.Duration { return 0 }
