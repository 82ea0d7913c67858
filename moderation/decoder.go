package moderation

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"sync"
	"time"

	"github.com/onairhq/onair/ingest"
)

// ErrDecoderClosed is returned by Decode after the decoder's process has exited.
var ErrDecoderClosed = errors.New("decoder closed")

// rawPacketSize is the raw H.264/HEVC demuxer's read size (its raw_packet_size).
const rawPacketSize = 1024

// maxJPEG bounds one decoded frame; a larger one means the output is garbage.
const maxJPEG = 16 << 20

// Decoder turns samples (keyframes, and frames after them) into JPEG images with one long-lived ffmpeg
// process: starting ffmpeg per frame costs far more than decoding one intra
// frame. Each keyframe carries its parameter sets and so decodes on its own:
// one Decoder can serve keyframes of any broadcast of its codec and output
// size, one after another (the decode pool shares them that way). Frames are
// decoded one at a time: Decode writes a keyframe and waits for exactly one
// image, so input and output never drift apart. A Decoder is not safe for
// concurrent use.
type Decoder struct {
	cmd    *exec.Cmd
	stdin  *os.File
	sent   int64       // bytes written to stdin
	frames chan []byte // images read off stdout, in order
	done   chan struct{}
	stderr *tailBuffer
	err    error // why the reader stopped; set before done is closed
	once   sync.Once
	quit   chan struct{} // closed by Close: the reader drops images from then on
	close  sync.Once

	codec    ingest.Codec
	mark     []byte // H.264: the sentinel stream (see sentinelH264); nil for HEVC
	sentinel []byte // the sentinel's image, once decoded
}

// DecoderOptions configures a Decoder.
type DecoderOptions struct {
	// FFmpegPath is the ffmpeg executable (default "ffmpeg").
	FFmpegPath string
	// Codec is the video codec: ingest.CodecH264, ingest.CodecHEVC or ingest.CodecAV1.
	Codec ingest.Codec
	// MaxWidth scales wider frames down, keeping the aspect ratio (0: keep size).
	// Width and Height, when set, give the output size instead.
	MaxWidth int
	// Width and Height fix the output size. ffmpeg keeps the size of its
	// first frame for the whole output, so a decoder shared by broadcasts
	// must be told the size rather than derive it (see decoderKey).
	Width, Height int
	// Quality is the JPEG qscale, 2 (best) to 31 (default 4).
	Quality int
}

// decodable reports whether a Decoder takes the codec.
func decodable(c ingest.Codec) bool {
	return c == ingest.CodecH264 || c == ingest.CodecHEVC || c == ingest.CodecAV1
}

// StartDecoder starts an ffmpeg process decoding keyframes of the given codec.
func StartDecoder(opts DecoderOptions) (*Decoder, error) {
	if opts.FFmpegPath == "" {
		opts.FFmpegPath = "ffmpeg"
	}
	if opts.Quality == 0 {
		opts.Quality = 4
	}
	var input []string
	switch opts.Codec {
	case ingest.CodecH264:
		input = []string{"-f", "h264"}
	case ingest.CodecHEVC:
		input = []string{"-f", "hevc"}
	case ingest.CodecAV1:
		// dav1d outputs each frame at once under low_delay; ffmpeg's own
		// AV1 decoder needs hardware.
		input = []string{"-f", "obu", "-c:v", "libdav1d"}
	default:
		return nil, fmt.Errorf("starting decoder: codec %q is not supported", opts.Codec)
	}
	args := []string{
		"-hide_banner", "-nostdin", "-loglevel", "error",
		// Start decoding from the first bytes: the parameter sets lead every
		// keyframe, so there is nothing to learn by probing ahead. Not
		// "-fflags nobuffer": it throws away the frame read while probing.
		"-flags", "low_delay", "-probesize", "32", "-analyzeduration", "0",
		// One thread: frame threading holds frames back by one per thread, and
		// an intra frame every few seconds needs no parallelism.
		"-threads", "1",
		// Filters keep their configuration when the frame size changes (the
		// sentinel is 16×16): the scaler follows the input by itself.
		"-reinit_filter", "0",
	}
	args = append(args, input...)
	args = append(args,
		"-i", "pipe:0",
		"-an", "-sn", "-dn",
		"-fps_mode", "passthrough",
	)
	// Output timestamps are the frame count: the raw demuxer's own repeat
	// when parameter sets change, and the JPEG encoder refuses that.
	switch {
	case opts.Width > 0 && opts.Height > 0:
		args = append(args, "-vf", fmt.Sprintf("settb=1/25,setpts=N,scale=%d:%d", opts.Width, opts.Height))
	case opts.MaxWidth > 0:
		args = append(args, "-vf", fmt.Sprintf("settb=1/25,setpts=N,scale='min(%d,iw)':-2", opts.MaxWidth))
	default:
		args = append(args, "-vf", "settb=1/25,setpts=N")
	}
	args = append(args,
		"-threads", "1", "-c:v", "mjpeg", "-q:v", strconv.Itoa(opts.Quality),
		"-flush_packets", "1", "-f", "image2pipe", "pipe:1")

	inR, inW, err := os.Pipe()
	if err != nil {
		return nil, fmt.Errorf("starting decoder: %w", err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		inR.Close()
		inW.Close()
		return nil, fmt.Errorf("starting decoder: %w", err)
	}
	d := &Decoder{
		stdin:  inW,
		frames: make(chan []byte, 1),
		done:   make(chan struct{}),
		quit:   make(chan struct{}),
		stderr: &tailBuffer{max: 2048},
	}
	d.codec = opts.Codec
	if opts.Codec == ingest.CodecH264 && opts.Width > 0 && opts.Height > 0 {
		// Only at a fixed output size: the sentinel's image must be the
		// same size as the samples' for the JPEG encoder.
		d.mark = sentinelH264()
	}
	d.cmd = exec.Command(opts.FFmpegPath, args...)
	d.cmd.Stdin = inR
	d.cmd.Stdout = outW
	d.cmd.Stderr = d.stderr
	// A child of ffmpeg (a wrapper script's) holding stderr open must not
	// keep Wait, and so the decoder's reader, from returning.
	d.cmd.WaitDelay = time.Second
	confine(d.cmd)
	err = d.cmd.Start()
	// The child holds its own copies of these ends now.
	inR.Close()
	outW.Close()
	if err != nil {
		inW.Close()
		outR.Close()
		return nil, fmt.Errorf("starting decoder %s: %w", opts.FFmpegPath, err)
	}
	go d.read(outR)
	return d, nil
}

// PID returns the ffmpeg process id.
func (d *Decoder) PID() int { return d.cmd.Process.Pid }

// read splits ffmpeg's output into JPEG images until it ends; it is owned by
// the Decoder and stops when the process's stdout closes (Close kills it).
func (d *Decoder) read(r *os.File) {
	defer r.Close()
	br := bufio.NewReaderSize(r, 64<<10)
	var err error
	for {
		var img []byte
		img, err = readJPEG(br)
		if err != nil {
			break
		}
		select {
		case d.frames <- img:
		case <-d.quit: // nobody will take it; read on until ffmpeg exits
		}
	}
	// Reap the process so that no zombie is left and its exit status is known.
	werr := d.cmd.Wait()
	if errors.Is(err, io.EOF) {
		err = ErrDecoderClosed
	}
	if werr != nil {
		err = fmt.Errorf("%w: ffmpeg %v: %s", err, werr, d.stderr.String())
	}
	d.err = err
	d.once.Do(func() { close(d.done) })
}

// Decode writes one keyframe (a self-contained Annex-B access unit) and returns
// its JPEG image. On a timeout or error the decoder's state is unknown: Close it
// and start another.
func (d *Decoder) Decode(ctx context.Context, annexB []byte) ([]byte, error) {
	_, img, err := d.DecodeSample(ctx, annexB)
	return img, err
}

// DecodeSample writes a self-contained Annex-B stream (a keyframe and,
// for H.264, the frames after it) and returns the first image it gave and
// the last. An H.264 sample decoded at a fixed output size is followed by
// the sentinel (see sentinelH264), and every image up to the sentinel's is
// the sample's; any other sample must be a keyframe alone and gives one image. On a timeout or error the
// decoder's state is unknown: Close it and start another.
func (d *Decoder) DecodeSample(ctx context.Context, annexB []byte) (first, last []byte, err error) {
	if d.mark == nil {
		return d.decode(ctx, annexB, nil)
	}
	if d.sentinel == nil {
		// The sentinel's image: the first thing this process decodes.
		if _, d.sentinel, err = d.decode(ctx, d.mark, nil); err != nil {
			return nil, nil, fmt.Errorf("decoding the sentinel: %w", err)
		}
	}
	return d.decode(ctx, append(annexB[:len(annexB):len(annexB)], d.mark...), d.sentinel)
}

// decode writes data and reads the images it gives: up to the one equal to
// until, or a single one when until is nil. The write runs in a goroutine
// of its own while images are read, so that ffmpeg never waits on its output.
func (d *Decoder) decode(ctx context.Context, data, until []byte) (first, last []byte, err error) {
	if deadline, ok := ctx.Deadline(); ok {
		d.stdin.SetWriteDeadline(deadline)
	} else {
		d.stdin.SetWriteDeadline(time.Time{})
	}
	// The raw demuxer reads its input in 1 KiB packets and waits for a full
	// one; zero padding (allowed after a NAL unit) up to the next boundary
	// makes it take the whole stream now.
	var pad int64
	if d.codec != ingest.CodecAV1 { // the OBU demuxer reads OBUs by their sizes
		pad = (rawPacketSize - (d.sent+int64(len(data)))%rawPacketSize) % rawPacketSize
	}
	buf := make([]byte, len(data)+int(pad))
	copy(buf, data)
	d.sent += int64(len(buf)) // a short write ends the decoder anyway
	wrote := make(chan error, 1)
	go func() {
		_, err := d.stdin.Write(buf)
		wrote <- err
	}()
	defer func() {
		if err != nil {
			d.stdin.SetWriteDeadline(time.Now()) // unblock the write: the decoder is done for
		}
		if werr := <-wrote; werr != nil && err == nil {
			err = fmt.Errorf("writing frames to decoder: %w", werr)
		}
	}()
	for {
		img, err := d.next(ctx)
		switch {
		case err != nil:
			return nil, nil, err
		case until == nil:
			return img, img, nil
		case bytes.Equal(img, until):
			if first == nil {
				return nil, nil, errors.New("decoding frames: the sample gave no image")
			}
			return first, last, nil
		}
		if first == nil {
			first = img
		}
		last = img
	}
}

// next returns the next image ffmpeg outputs.
func (d *Decoder) next(ctx context.Context) ([]byte, error) {
	select {
	case img := <-d.frames:
		return img, nil
	case <-d.done:
		// A frame may have raced the exit.
		select {
		case img := <-d.frames:
			return img, nil
		default:
		}
		return nil, fmt.Errorf("decoding frames: %w", d.err)
	case <-ctx.Done():
		return nil, fmt.Errorf("decoding frames: %w", ctx.Err())
	}
}

// Close kills the ffmpeg process and waits until it has exited.
func (d *Decoder) Close() error {
	d.close.Do(func() { close(d.quit) })
	d.stdin.Close()
	select {
	case <-d.done:
		return nil
	case <-time.After(200 * time.Millisecond):
	}
	// ffmpeg ends by itself on end of input once it flushes; don't wait long for it.
	d.cmd.Process.Kill()
	<-d.done
	return nil
}

// Done is closed once the ffmpeg process has exited and been reaped.
func (d *Decoder) Done() <-chan struct{} { return d.done }

// readJPEG reads one JPEG image (SOI to EOI) from r, walking its segments so
// that bytes inside headers are never mistaken for markers.
func readJPEG(r *bufio.Reader) ([]byte, error) {
	var buf bytes.Buffer
	// Skip anything before SOI (there should be nothing).
	for {
		b, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b != 0xff {
			continue
		}
		b2, err := r.ReadByte()
		if err != nil {
			return nil, err
		}
		if b2 == 0xd8 {
			break
		}
		r.UnreadByte()
	}
	buf.Write([]byte{0xff, 0xd8})
	next := -1 // a marker already read while scanning entropy-coded data
	for {
		if buf.Len() > maxJPEG {
			return nil, errors.New("reading JPEG: image too large")
		}
		var m byte
		if next >= 0 {
			m, next = byte(next), -1
		} else {
			b, err := r.ReadByte()
			if err != nil {
				return nil, noEOF(err)
			}
			if b != 0xff {
				return nil, fmt.Errorf("reading JPEG: expected a marker, got %#x", b)
			}
			if m, err = r.ReadByte(); err != nil {
				return nil, noEOF(err)
			}
			for m == 0xff { // fill bytes
				if m, err = r.ReadByte(); err != nil {
					return nil, noEOF(err)
				}
			}
		}
		buf.Write([]byte{0xff, m})
		switch {
		case m == 0xd9: // EOI
			return buf.Bytes(), nil
		case m >= 0xd0 && m <= 0xd7, m == 0x01: // markers without a length
			continue
		}
		var l [2]byte
		if _, err := io.ReadFull(r, l[:]); err != nil {
			return nil, noEOF(err)
		}
		buf.Write(l[:])
		n := int(l[0])<<8 | int(l[1])
		if n < 2 {
			return nil, fmt.Errorf("reading JPEG: bad segment length %d", n)
		}
		if _, err := io.CopyN(&buf, r, int64(n-2)); err != nil {
			return nil, noEOF(err)
		}
		if m != 0xda { // only SOS is followed by entropy-coded data
			continue
		}
		// Copy entropy-coded data up to the next marker that is not a
		// stuffed 0xff00 or a restart marker.
		for next < 0 {
			b, err := r.ReadByte()
			if err != nil {
				return nil, noEOF(err)
			}
			if b != 0xff {
				buf.WriteByte(b)
				continue
			}
			m, err := r.ReadByte()
			if err != nil {
				return nil, noEOF(err)
			}
			for m == 0xff {
				if m, err = r.ReadByte(); err != nil {
					return nil, noEOF(err)
				}
			}
			if m == 0x00 || (m >= 0xd0 && m <= 0xd7) {
				buf.WriteByte(b)
				buf.WriteByte(m)
				continue
			}
			next = int(m)
		}
	}
}

func noEOF(err error) error {
	if errors.Is(err, io.EOF) {
		return io.ErrUnexpectedEOF
	}
	return err
}

// tailBuffer keeps the last bytes written to it, for error messages.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(bytes.TrimSpace(t.b))
}
