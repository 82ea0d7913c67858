package moderation

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// still renders one frame of a lavfi source through an ffmpeg filter chain.
func still(t *testing.T, dir, name, src, vf string) string {
	t.Helper()
	out := filepath.Join(dir, name)
	args := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", src, "-frames:v", "1"}
	if vf != "" {
		args = append(args, "-vf", vf)
	}
	args = append(args, "-q:v", "2", out)
	if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
		t.Fatalf("ffmpeg %s: %v: %s", src, err, b)
	}
	return out
}

func TestHashList(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	known := still(t, dir, "bars.png", "smptebars=s=1280x720", "")
	h, err := HashImageFile(known)
	if err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "blocklist.txt")
	if err := os.WriteFile(list, []byte(fmt.Sprintf("# known-bad\n%016x  test bars\n\n", h)), 0o644); err != nil {
		t.Fatal(err)
	}
	hl, err := NewHashList(list, 10, time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name, src, vf string
		block         bool
	}{
		{"same", "smptebars=s=1280x720", "", true},
		{"re-encoded jpeg q25", "smptebars=s=1280x720", "", true},
		{"resized 320x180", "smptebars=s=1280x720", "scale=320:180", true},
		{"resized 853x480 + blur", "smptebars=s=1280x720", "scale=853:480,boxblur=2", true},
		{"stretched 4:3", "smptebars=s=1280x720", "scale=640:480", true},
		{"testsrc", "testsrc=s=1280x720", "", false},
		{"testsrc2", "testsrc2=s=1280x720", "", false},
		{"mandelbrot", "mandelbrot=s=1280x720", "", false},
		{"rgbtestsrc", "rgbtestsrc=s=1280x720", "", false},
		{"color", "color=c=red:s=1280x720", "", false},
		{"life", "life=s=1280x720:mold=10:r=30:ratio=0.5:seed=7", "", false},
		{"cellauto", "cellauto=s=1280x720:seed=3", "", false},
		{"yuvtestsrc", "yuvtestsrc=s=1280x720", "", false},
		{"gradients", "gradients=s=1280x720:seed=5", "", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			name := "frame.jpg"
			q := "2"
			if tc.name == "re-encoded jpeg q25" {
				q = "25"
			}
			out := filepath.Join(t.TempDir(), name)
			args := []string{"-hide_banner", "-loglevel", "error", "-y", "-f", "lavfi", "-i", tc.src, "-frames:v", "1"}
			if tc.vf != "" {
				args = append(args, "-vf", tc.vf)
			}
			args = append(args, "-q:v", q, out)
			if b, err := exec.Command("ffmpeg", args...).CombinedOutput(); err != nil {
				t.Skipf("ffmpeg %s: %v: %s", tc.src, err, b) // an old ffmpeg may lack the source
			}
			jpg, err := os.ReadFile(out)
			if err != nil {
				t.Fatal(err)
			}
			f := &Frame{Channel: "c", JPEG: jpg}
			v, err := hl.Screen(context.Background(), f)
			if err != nil {
				t.Fatal(err)
			}
			img, _ := f.Image()
			d := Distance(h, HashImage(img))
			t.Logf("distance %d", d)
			if !tc.block && d < 20 {
				t.Errorf("distance %d: too close for comfort with a threshold of 10", d)
			}
			if (v.Action == Block) != tc.block {
				t.Errorf("verdict %+v, want block=%v", v, tc.block)
			}
			if tc.block && v.Reason != "matches a blocklisted image (test bars)" {
				t.Errorf("reason %q", v.Reason)
			}
		})
	}
}

func TestHashListReloads(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	jpg, err := os.ReadFile(still(t, dir, "m.jpg", "mandelbrot=s=640x360", ""))
	if err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "list")
	os.WriteFile(list, []byte("# nothing yet\n"), 0o644)
	hl, err := NewHashList(list, 10, 50*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	screen := func() Action {
		v, err := hl.Screen(context.Background(), &Frame{JPEG: jpg})
		if err != nil {
			t.Fatal(err)
		}
		return v.Action
	}
	if a := screen(); a != Allow {
		t.Fatalf("empty list: %s", a)
	}
	f := &Frame{JPEG: jpg}
	img, _ := f.Image()
	os.WriteFile(list, []byte(fmt.Sprintf("0x%016X\n", HashImage(img))), 0o644)
	os.Chtimes(list, time.Now().Add(time.Second), time.Now().Add(time.Second))
	time.Sleep(100 * time.Millisecond)
	if a := screen(); a != Block {
		t.Fatalf("after adding the hash: %s", a)
	}
	// A broken edit keeps the previous list in force.
	os.WriteFile(list, []byte("not-a-hash\n"), 0o644)
	os.Chtimes(list, time.Now().Add(2*time.Second), time.Now().Add(2*time.Second))
	time.Sleep(100 * time.Millisecond)
	if a := screen(); a != Block || hl.LoadError() == nil {
		t.Fatalf("after a bad edit: %s, load error %v", a, hl.LoadError())
	}
	if _, err := NewHashList(list, 10, 0); err == nil {
		t.Fatal("NewHashList accepted a bad file")
	}
}

func TestHashListTakesDownStream(t *testing.T) {
	needFFmpeg(t)
	dir := t.TempDir()
	h, err := HashImageFile(still(t, dir, "bars.png", "smptebars=s=1280x720", ""))
	if err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "list")
	os.WriteFile(list, []byte(fmt.Sprintf("%016x known bars\n", h)), 0o644)
	// The published stream is smaller and lossy: the hash must survive that.
	c := encodeClip(t, "testsrc2=s=640x360:r=30:d=2[a];smptebars=s=640x360:r=30:d=2[b];[a][b]concat=n=2:v=1", "h264", 30, 30)
	hb := newHub()
	opts := DefaultOptions()
	opts.Interval = time.Second
	opts.BlocklistPath = list
	opts.Enforcer = hb
	opts.Logger = quietLogger()
	m := newModerator(t, opts)
	play(t, m, hb, c, "bars", 0, nil)
	m.Close()
	calls := hb.takedowns()
	if len(calls) != 1 || calls[0].reason != "matches a blocklisted image (known bars)" || calls[0].ban != opts.DefaultBan {
		t.Fatalf("takedowns %+v", calls)
	}
}
