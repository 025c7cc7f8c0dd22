package redis

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"time"

	goredis "github.com/redis/go-redis/v9"

	"example.com/acme/shop/realtime"
)

// Events is the log of note changes of the realtime feature: a Redis
// Stream that every instance appends to and reads (realtime.Stream).
//
// Keys: <prefix>:events is the stream; <prefix>:events:last the id of its
// newest entry, which the next entry records as its prev; and
// <prefix>:events:version:<note id> the last version published of a note,
// kept for a day (a write publishes within seconds of its COMMIT, or never).
type Events struct {
	client *goredis.Client
	stream string
	maxLen int64
}

// EventsOptions configure Events.
type EventsOptions struct {
	URL    string // REDIS_URL
	Prefix string // CACHE_PREFIX
	// MaxLen is the retention: the stream keeps at least the MaxLen newest
	// events (EVENTS_RETENTION); Redis trims older ones in whole blocks.
	MaxLen int64
}

// NewEvents connects to Redis (lazily: the first command dials).
func NewEvents(o EventsOptions) (*Events, error) {
	opt, err := goredis.ParseURL(o.URL)
	if err != nil {
		return nil, fmt.Errorf("events: parse REDIS_URL: %w", err)
	}
	// A blocking read (XREAD BLOCK) holds its connection for up to 2 s:
	// go-redis extends the read timeout of blocking commands by the block.
	opt.ReadTimeout, opt.WriteTimeout, opt.DialTimeout = time.Second, time.Second, time.Second
	if o.MaxLen <= 0 {
		o.MaxLen = 10000
	}
	return &Events{client: goredis.NewClient(opt), stream: o.Prefix + ":events", maxLen: o.MaxLen}, nil
}

// Close closes the connections.
func (e *Events) Close() error { return e.client.Close() }

// Check is a readiness check: Redis answers.
func (e *Events) Check(ctx context.Context) error { return e.client.Ping(ctx).Err() }

var _ realtime.Stream = (*Events)(nil)

// publishScript appends an event unless the note's version is not greater
// than the last published (then it returns false). One script, so that the
// check, the append and the chain of prev ids are one atomic step.
//
//	KEYS: stream, stream:last, stream:version:<id>
//	ARGV: version, maxlen, type, data, version ttl in seconds
var publishScript = goredis.NewScript(`
local v = tonumber(redis.call('GET', KEYS[3]) or '0')
if tonumber(ARGV[1]) <= v then return false end
redis.call('SET', KEYS[3], ARGV[1], 'EX', ARGV[5])
local prev = redis.call('GET', KEYS[2]) or '0-0'
local id = redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[2], '*', 'type', ARGV[3], 'data', ARGV[4], 'prev', prev)
redis.call('SET', KEYS[2], id)
return id
`)

const versionTTL = 24 * time.Hour

// Publish appends the change; see realtime.Stream.
func (e *Events) Publish(ctx context.Context, c realtime.Change) (bool, error) {
	data, err := json.Marshal(c)
	if err != nil {
		return false, fmt.Errorf("events: encode: %w", err)
	}
	keys := []string{e.stream, e.stream + ":last", e.stream + ":version:" + strconv.FormatInt(c.NoteID, 10)}
	err = publishScript.Run(ctx, e.client, keys,
		c.Version, e.maxLen, c.Type(), data, int64(versionTTL.Seconds())).Err()
	if errors.Is(err, goredis.Nil) {
		return false, nil // an equal or newer version is in the log
	}
	if err != nil {
		return false, fmt.Errorf("events: publish note %d version %d: %w", c.NoteID, c.Version, err)
	}
	return true, nil
}

// Read returns events after the id; see realtime.Stream.
func (e *Events) Read(ctx context.Context, after string, count int, block time.Duration) ([]realtime.Event, error) {
	if after == "" {
		after = "0-0"
	}
	var msgs []goredis.XMessage
	if block <= 0 {
		var err error
		msgs, err = e.client.XRangeN(ctx, e.stream, "("+after, "+", int64(count)).Result()
		if err != nil {
			return nil, fmt.Errorf("events: read after %s: %w", after, err)
		}
	} else {
		streams, err := e.client.XRead(ctx, &goredis.XReadArgs{
			Streams: []string{e.stream, after}, Count: int64(count), Block: block,
		}).Result()
		if errors.Is(err, goredis.Nil) {
			return nil, nil // nothing within block
		}
		if err != nil {
			return nil, fmt.Errorf("events: read after %s: %w", after, err)
		}
		for _, s := range streams {
			msgs = append(msgs, s.Messages...)
		}
	}
	out := make([]realtime.Event, 0, len(msgs))
	for _, m := range msgs {
		typ, _ := m.Values["type"].(string)
		data, _ := m.Values["data"].(string)
		prev, _ := m.Values["prev"].(string)
		out = append(out, realtime.Event{ID: m.ID, Prev: prev, Type: typ, Data: []byte(data)})
	}
	return out, nil
}

// Last returns the newest id, 0-0 for none; see realtime.Stream.
func (e *Events) Last(ctx context.Context) (string, error) {
	msgs, err := e.client.XRevRangeN(ctx, e.stream, "+", "-", 1).Result()
	if err != nil {
		return "", fmt.Errorf("events: read the newest id: %w", err)
	}
	if len(msgs) == 0 {
		return "0-0", nil
	}
	return msgs[0].ID, nil
}
