//go:build !linux

package moderation

import (
	"os"
	"os/exec"
)

// confine makes cmd start the decoder with no environment but PATH and /
// as its working directory (see confine_linux.go for the rest).
func confine(cmd *exec.Cmd) {
	cmd.Dir = "/"
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
}
