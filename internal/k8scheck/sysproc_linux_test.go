package k8scheck

import (
	"os/exec"
	"runtime"
	"sync"
	"syscall"
)

// sysProcAttr makes a server die with the test binary, even one that
// panicked or was killed (Pdeathsig).
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
}

// spawn starts cmd from one goroutine locked to its OS thread for the life
// of the test binary: Pdeathsig fires when the thread that forked the child
// exits, not the process, and the Go runtime may end other threads.
func spawn(cmd *exec.Cmd) error {
	spawner.once.Do(func() {
		spawner.reqs = make(chan spawnReq)
		go func() {
			runtime.LockOSThread() // never unlocked: the thread lives as long as the process
			for r := range spawner.reqs {
				r.done <- r.cmd.Start()
			}
		}()
	})
	done := make(chan error, 1)
	spawner.reqs <- spawnReq{cmd, done}
	return <-done
}

type spawnReq struct {
	cmd  *exec.Cmd
	done chan error
}

var spawner struct {
	once sync.Once
	reqs chan spawnReq
}
