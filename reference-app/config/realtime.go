package config

// Realtime holds the settings of the realtime feature.
type Realtime struct {
	// EventsRetention is how many of the newest events the log keeps at
	// least (EVENTS_RETENTION): a client that reconnects with an older
	// Last-Event-ID gets a reset event instead of what it missed.
	EventsRetention int
}

func loadRealtime(r *reader, c *Config) {
	c.EventsRetention = r.int("EVENTS_RETENTION", 10000, 100, 10_000_000)
}
