//go:build !linux

package k8scheck

import (
	"os/exec"
	"syscall"
)

// Without Pdeathsig (Linux only) a server can outlive a test binary that
// crashed; t.Cleanup still stops it otherwise.
func sysProcAttr() *syscall.SysProcAttr { return nil }

func spawn(cmd *exec.Cmd) error { return cmd.Start() }
