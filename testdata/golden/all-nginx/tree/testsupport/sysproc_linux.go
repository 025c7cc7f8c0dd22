package testsupport

import "syscall"

// sysProcAttr makes a child die with the test binary (Pdeathsig: even if the
// test process panics or is killed) and puts it in its own process group so
// that it and its children (nginx workers, postgres backends) can be killed
// together.
func sysProcAttr(runAs *ids) *syscall.SysProcAttr {
	a := &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if runAs != nil {
		// Go sets Pdeathsig after switching user, so the switch (which would
		// clear it) does not undo it.
		a.Credential = &syscall.Credential{Uid: runAs.uid, Gid: runAs.gid}
	}
	return a
}

func signalGroup(pid int, sig syscall.Signal) error { return syscall.Kill(-pid, sig) }

func processAlive(pid int) bool {
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}
