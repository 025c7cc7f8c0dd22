//go:build !unix

package testsupport

import (
	"os"
	"syscall"
)

// Outside Unix there are no process groups or signals to stop gracefully:
// every stop is a kill, and running as another user is not supported.
func sysProcAttr(runAs *ids) *syscall.SysProcAttr { return nil }

func signalGroup(pid int, sig syscall.Signal) error {
	p, err := os.FindProcess(pid)
	if err != nil {
		return err
	}
	return p.Kill()
}

// processAlive says yes: stale directories are then never removed, which is
// the safe mistake.
func processAlive(pid int) bool { return true }
