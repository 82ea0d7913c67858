package moderation

import (
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
)

// The decoder parses whatever a publisher sends, so it is the process a
// crafted stream would attack. It runs with as little as it needs:
//   - no environment but PATH (onair's own may hold secrets: ONAIR_SECRET,
//     the admin token), and / as its working directory;
//   - as the user nobody when onair runs as root and nobody can run the
//     ffmpeg given, so the data directory (0700, onair's) is out of its reach;
//   - an address-space limit (a stream that makes it allocate without end
//     fails there instead of taking the machine's memory), a CPU-time limit
//     over its life (each decode is bounded by DecodeTimeout besides), and a
//     lower scheduling priority than onair, so decoding never starves the
//     media path. A shell sets them on itself and then becomes ffmpeg (limits
//     set from outside, with prlimit(2), need a privilege that containers
//     often drop, and never apply to another user's process).
const (
	decoderAddressSpaceKiB = 2 << 20 // 2 GiB; a 4K frame decodes in a tenth of it
	decoderCPUSeconds      = 3600    // over the process's life; the pool starts another
	decoderNice            = 10
)

// confine makes cmd start the decoder confined.
func confine(cmd *exec.Cmd) {
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	sh, err := exec.LookPath("/bin/sh")
	if err != nil {
		return
	}
	ffmpeg := cmd.Path
	script := "ulimit -v " + strconv.Itoa(decoderAddressSpaceKiB) + " && ulimit -t " + strconv.Itoa(decoderCPUSeconds) +
		` && exec nice -n ` + strconv.Itoa(decoderNice) + ` "$0" "$@"`
	cmd.Path = sh
	cmd.Args = append([]string{"sh", "-c", script, ffmpeg}, cmd.Args[1:]...)
	if os.Geteuid() != 0 || !runnableByAnyone(ffmpeg) {
		return
	}
	u, err := user.Lookup("nobody")
	if err != nil {
		return
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid), Groups: []uint32{}}}
}

// runnableByAnyone reports whether any user may run the file at path: it
// and every directory above it open to others.
func runnableByAnyone(path string) bool {
	abs, err := filepath.Abs(path)
	if err != nil {
		return false
	}
	if fi, err := os.Stat(abs); err != nil || fi.Mode().Perm()&0o001 == 0 {
		return false
	}
	for dir := filepath.Dir(abs); ; dir = filepath.Dir(dir) {
		fi, err := os.Stat(dir)
		if err != nil || fi.Mode().Perm()&0o001 == 0 {
			return false
		}
		if dir == "/" {
			return true
		}
	}
}
