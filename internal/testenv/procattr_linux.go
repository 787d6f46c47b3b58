package testenv

import (
	"os/exec"
	"syscall"
)

// dieWithTest makes the kernel kill cmd's process when the test binary
// dies without running its clean-ups (a -timeout panic, SIGKILL), so that
// no server of a test outlives it. The signal is tied to the thread that
// started the process, which the Go runtime keeps for as long as no
// goroutine exits while locked to it.
func dieWithTest(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
