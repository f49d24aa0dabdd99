package loader

import (
	"os/exec"
	"syscall"
)

// setParentDeathSignal has the kernel kill the plugin when the host dies.
func setParentDeathSignal(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}
