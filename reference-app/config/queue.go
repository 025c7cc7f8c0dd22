package config

import "net/url"

// Queue holds the settings of the queue feature.
type Queue struct {
	// NotesWebhookURL receives a POST for every change of a note
	// (NOTES_WEBHOOK_URL); empty: no webhook jobs are enqueued.
	NotesWebhookURL string
}

func loadQueue(r *reader, c *Config) {
	c.NotesWebhookURL = r.str("NOTES_WEBHOOK_URL", "")
	if c.NotesWebhookURL == "" {
		return
	}
	u, err := url.Parse(c.NotesWebhookURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		r.fail("NOTES_WEBHOOK_URL", c.NotesWebhookURL, "want an http:// or https:// URL with a host, or nothing for no webhooks")
	}
}
