//go:build unix && !linux

package testsupport

import "syscall"

// sysProcAttr puts the child in its own process group so that it and its
// children can be killed together. Without Pdeathsig (Linux only) a child
// can outlive a test binary that crashed.
func sysProcAttr(runAs *ids) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true}
	if runAs != nil {
		a.Credential = &syscall.Credential{Uid: runAs.uid, Gid: runAs.gid}
	}
	return a
}

func signalGroup(pid int, sig syscall.Signal) error { return syscall.Kill(-pid, sig) }

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
