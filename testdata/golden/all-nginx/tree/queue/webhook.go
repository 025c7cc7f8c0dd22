// Package queue holds what the background jobs do, apart from how they are
// queued (River, in package postgres): here, sending a change of a note to a
// webhook.
package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"time"
)

// Event is the JSON body of one webhook delivery.
type Event struct {
	Type   string `json:"type"` // "note.changed" or "note.deleted"
	NoteID int64  `json:"note_id"`
}

// The event types.
const (
	NoteChanged = "note.changed"
	NoteDeleted = "note.deleted"
)

// IDHeader carries the id of the delivery: the same on every attempt of one
// event, different for every event. Deliveries are at least once (a retry
// after a lost answer, or after an instance died mid-delivery, sends the
// event again), so a receiver that must act once dedupes on it.
const IDHeader = "Webhook-Id"

// Webhook posts events to one URL.
type Webhook struct {
	URL    string
	Client *http.Client
}

// NewWebhook returns a Webhook for url with a client that gives up on a
// delivery after timeout.
func NewWebhook(url string, timeout time.Duration) *Webhook {
	return &Webhook{URL: url, Client: &http.Client{Timeout: timeout}}
}

// Send posts e with the delivery id. Any answer but 2xx is an error, so the
// job is tried again later.
func (w *Webhook) Send(ctx context.Context, id string, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, w.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set(IDHeader, id)
	resp, err := w.Client.Do(req)
	if err != nil {
		return fmt.Errorf("webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // lets the connection be reused
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return fmt.Errorf("webhook: %s answered %s", w.URL, resp.Status)
	}
	return nil
}
