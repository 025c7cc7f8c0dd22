package config

import (
	"strings"
	"testing"
	"time"
)

func TestWorker(t *testing.T) {
	c, err := Load(env())
	if err != nil {
		t.Fatal(err)
	}
	if c.WorkerInterval != time.Minute || c.LeaderPoll != 500*time.Millisecond {
		t.Errorf("worker defaults = %s, %s", c.WorkerInterval, c.LeaderPoll)
	}
	c, err = Load(env("WORKER_INTERVAL", "200ms", "LEADER_POLL_INTERVAL", "100ms"))
	if err != nil || c.WorkerInterval != 200*time.Millisecond || c.LeaderPoll != 100*time.Millisecond {
		t.Errorf("got %s, %s, %v", c.WorkerInterval, c.LeaderPoll, err)
	}
	for _, kv := range [][2]string{
		{"WORKER_INTERVAL", "10ms"}, {"WORKER_INTERVAL", "soon"}, {"WORKER_INTERVAL", "150500us"},
		{"LEADER_POLL_INTERVAL", "10s"}, {"LEADER_POLL_INTERVAL", "1ms"},
	} {
		_, err := Load(env(kv[0], kv[1]))
		if err == nil || !strings.Contains(err.Error(), kv[0]) {
			t.Errorf("%s=%s: error %v, want one naming the variable", kv[0], kv[1], err)
		}
	}
}
