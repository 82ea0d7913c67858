package load

import (
	"errors"
	"net"
	"syscall"
	"time"
	"unsafe"
)

// maxIovecs bounds one writev; Linux's IOV_MAX is 1024.
const maxIovecs = 1024

// nbWriter writes to a TCP connection without ever waiting: one writev
// of whatever the socket buffer takes, so one slow server cannot hold up
// the scheduler goroutine that serves many publishers.
type nbWriter struct {
	rc   syscall.RawConn
	iov  []syscall.Iovec
	bufs [][]byte
	n    int
	err  error
	do   func(fd uintptr) bool // w.writev, bound once so a write allocates nothing
}

func newNBWriter(c net.Conn) (*nbWriter, error) {
	sc, ok := c.(syscall.Conn)
	if !ok {
		return nil, errors.New("connection has no file descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil, err
	}
	w := &nbWriter{rc: rc}
	w.do = w.writev
	return w, nil
}

// write writes a prefix of bufs and returns its length; 0 and no error
// when the socket buffer is full.
func (w *nbWriter) write(bufs [][]byte) (int, error) {
	w.bufs, w.n, w.err = bufs, 0, nil
	if err := w.rc.Write(w.do); err != nil {
		return 0, err
	}
	w.bufs = nil
	return w.n, w.err
}

func (w *nbWriter) writev(fd uintptr) bool {
	w.iov = w.iov[:0]
	for _, b := range w.bufs {
		if len(b) == 0 {
			continue
		}
		if len(w.iov) == maxIovecs {
			break
		}
		v := syscall.Iovec{Base: &b[0]}
		v.SetLen(len(b))
		w.iov = append(w.iov, v)
	}
	if len(w.iov) == 0 {
		return true
	}
	r, _, e := syscall.Syscall(syscall.SYS_WRITEV, fd, uintptr(unsafe.Pointer(&w.iov[0])), uintptr(len(w.iov)))
	switch e {
	case 0:
		w.n = int(r)
	case syscall.EAGAIN, syscall.EINTR:
	default:
		w.err = e
	}
	clear(w.iov) // drop the pointers into the media until the next write
	return true  // never wait for the socket to drain
}

// cpuTime is the CPU time (user + system) this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
