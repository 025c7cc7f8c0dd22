package config

import (
	"strings"
	"testing"
)

func TestQueue(t *testing.T) {
	c, err := Load(env())
	if err != nil || c.NotesWebhookURL != "" {
		t.Errorf("queue default: %q, %v; want no webhook", c.NotesWebhookURL, err)
	}
	c, err = Load(env("NOTES_WEBHOOK_URL", "https://hooks.example.com/notes"))
	if err != nil || c.NotesWebhookURL != "https://hooks.example.com/notes" {
		t.Errorf("got %q, %v", c.NotesWebhookURL, err)
	}
	for _, v := range []string{"hooks.example.com/notes", "ftp://hooks.example.com", "http://", "http://[::1"} {
		_, err := Load(env("NOTES_WEBHOOK_URL", v))
		if err == nil || !strings.Contains(err.Error(), "NOTES_WEBHOOK_URL") {
			t.Errorf("NOTES_WEBHOOK_URL=%s: error %v, want one naming the variable", v, err)
		}
	}
}
