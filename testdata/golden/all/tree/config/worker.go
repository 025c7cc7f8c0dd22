package config

import "time"

// Worker holds the settings of the worker feature.
type Worker struct {
	// WorkerInterval is the schedule period of the jobs (WORKER_INTERVAL);
	// a job runs once per slot, slot = unix time truncated to the interval.
	WorkerInterval time.Duration
	// LeaderPoll is how often followers try to take the leader lease
	// (LEADER_POLL_INTERVAL); the lease is 2 polls, renewed every half
	// poll, so a frozen or dead leader is replaced within 3 polls.
	LeaderPoll time.Duration
}

func loadWorker(r *reader, c *Config) {
	c.WorkerInterval = r.duration("WORKER_INTERVAL", time.Minute)
	// Whole milliseconds: slots are listed as unix milliseconds.
	if c.WorkerInterval < 100*time.Millisecond || c.WorkerInterval%time.Millisecond != 0 {
		r.fail("WORKER_INTERVAL", r.getenv("WORKER_INTERVAL"), "want at least 100ms, in whole milliseconds")
	}
	c.LeaderPoll = r.duration("LEADER_POLL_INTERVAL", 500*time.Millisecond)
	// The lease is 2 polls and a frozen or dead leader is replaced within 3
	// (see postgres.Elector): at least 50ms so that a renew's round trip is
	// small next to the lease, at most 5s so that takeover stays within 15s.
	if c.LeaderPoll < 50*time.Millisecond || c.LeaderPoll > 5*time.Second {
		r.fail("LEADER_POLL_INTERVAL", r.getenv("LEADER_POLL_INTERVAL"), "want from 50ms to 5s")
	}
}
