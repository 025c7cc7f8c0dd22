package config

import (
	"strings"
	"testing"
)

func TestRealtime(t *testing.T) {
	c, err := Load(env())
	if err != nil || c.EventsRetention != 10000 {
		t.Fatalf("EVENTS_RETENTION default = %d, %v; want 10000", c.EventsRetention, err)
	}
	if c, err = Load(env("EVENTS_RETENTION", "500")); err != nil || c.EventsRetention != 500 {
		t.Errorf("EVENTS_RETENTION=500: %d, %v", c.EventsRetention, err)
	}
	for _, v := range []string{"99", "lots", "-1"} {
		if _, err := Load(env("EVENTS_RETENTION", v)); err == nil || !strings.Contains(err.Error(), `EVENTS_RETENTION="`+v+`"`) {
			t.Errorf("EVENTS_RETENTION=%s: %v, want an error naming it", v, err)
		}
	}
}
