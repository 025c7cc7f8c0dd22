package clustertest

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lbOutcome is what one client receives for one bad input, from one load
// balancer.
type lbOutcome struct {
	status int    // the HTTP status; 0 for the kinds below that have none
	code   string // the JSON error code, or "" for an answer of the app
	// app: the request reached an instance (X-Instance-ID), whose answer,
	// when it is an error, has the JSON shape too.
	app bool
	// Known exceptions, each because the load balancer cannot do better:
	closed   bool // the connection closes with not one byte sent
	silent   bool // nothing is sent before the test stops waiting (slow cases)
	bodyOnly bool // an HTTP/0.9 answer: the JSON body with no status line
	// appText: the app's net/http refuses the request before any handler
	// runs, with a text/plain error that the load balancer passes on.
	appText bool
}

// Hazard: an error the load balancer makes itself (a request it cannot parse
// or will not pass on) is HTML naming the software and its version, unlike
// every answer of the app. Each bad input is sent as raw bytes; whatever
// comes back must be the app's JSON error shape with no server version, or
// one of the exceptions listed in the load balancer's config and asserted
// here exactly.
func TestLBErrors(t *testing.T) {
	c := startCluster(t, nil)
	addr := strings.TrimPrefix(c.lb.URL, "http://")
	big := func(n int) string { return strings.Repeat("a", n) }

	// haproxy answers a request it cannot parse (400) or that is too slow
	// (408) from its HTTP/1 layer, where only an empty errorfile is honoured:
	// see deploy/haproxy.cfg. nginx never answers a 408.
	closed := lbOutcome{closed: true}
	cases := []struct {
		name           string
		raw            string
		nginx, haproxy lbOutcome
	}{
		{"NUL in the path", "GET /a\x00b HTTP/1.1\r\nHost: x\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		{"space in the path", "GET /a b HTTP/1.1\r\nHost: x\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		{"invalid request line", "GARBAGE\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		{"bad method characters", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		{"unknown HTTP version", "GET / HTTP/9.x\r\nHost: x\r\n\r\n",
			lbOutcome{status: 505, code: "http_version_not_supported"}, closed},
		// nginx drops the line (ignore_invalid_headers) and passes the rest on.
		{"header line without colon", "GET /api/instance HTTP/1.1\r\nHost: x\r\nBadHeader\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 200, app: true}, closed},
		{"space in a header name", "GET / HTTP/1.1\r\nHost: x\r\nBa d: 1\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		// haproxy's limit is its 16k buffer, nginx's 8k a line
		// (large_client_header_buffers).
		{"header of 10 KB", "GET /api/instance HTTP/1.1\r\nHost: x\r\nX-Big: " + big(10<<10) + "\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 400, code: "header_too_large"}, lbOutcome{status: 200, app: true}},
		{"cookie of 20 KB", "GET /api/instance HTTP/1.1\r\nHost: x\r\nCookie: a=" + big(20<<10) + "\r\n\r\n",
			lbOutcome{status: 400, code: "header_too_large"}, closed},
		{"URI of 10 KB", "GET /" + big(10<<10) + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 414, code: "uri_too_long"}, lbOutcome{status: 404, code: "not_found", app: true}},
		{"URI of 20 KB", "GET /" + big(20<<10) + " HTTP/1.1\r\nHost: x\r\n\r\n",
			lbOutcome{status: 414, code: "uri_too_long"}, closed},
		{"HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, lbOutcome{status: 400, code: "bad_request"}},
		// HTTP/1.0 needs no Host: haproxy passes it on; nginx would pass it
		// on without one, as HTTP/1.1, which the app refuses, so it answers.
		{"HTTP/1.0 without Host", "GET /api/instance HTTP/1.0\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, lbOutcome{status: 200, app: true}},
		{"HTTP/0.9", "GET /\r\n",
			lbOutcome{bodyOnly: true, code: "bad_request"}, closed},
		{"two Host headers", "GET / HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		{"malformed Host", "GET / HTTP/1.1\r\nHost: a/b\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, lbOutcome{status: 400, code: "bad_request"}},
		{"invalid Content-Length", "POST /api/instance HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		{"two Content-Lengths", "POST /api/instance HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
			lbOutcome{status: 400, code: "bad_request"}, closed},
		// haproxy drops Content-Length and passes the chunked body on.
		{"Content-Length and Transfer-Encoding", "POST /api/instance HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, lbOutcome{status: 405, app: true}},
		{"unknown Transfer-Encoding", "POST /api/instance HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n",
			lbOutcome{status: 501, code: "not_implemented"}, closed},
		{"TRACE", "TRACE /api/instance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 405, code: "method_not_allowed"}, lbOutcome{status: 405, app: true}},
		{"bad percent-encoding", "GET /%zz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, lbOutcome{status: 400, appText: true}},
		{"NUL in a header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x00b\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 400, code: "bad_request"}, lbOutcome{status: 400, appText: true}},
		{"control character in a header value", "GET / HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 400, appText: true}, lbOutcome{status: 400, appText: true}},
		// nginx's error locations are internal; the app has no such path.
		{"the load balancer's error URI", "GET /_lb_error/bad_request HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 404, code: "not_found"}, lbOutcome{status: 404, code: "not_found", app: true}},
		{"ordinary request", "GET /api/instance HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 200, app: true}, lbOutcome{status: 200, app: true}},
		{"unknown path", "GET /no/such/path HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
			lbOutcome{status: 404, code: "not_found", app: true}, lbOutcome{status: 404, code: "not_found", app: true}},
		// haproxy: "timeout http-request 10s", then the connection closes
		// with no response. nginx: client_header_timeout (60s by default),
		// then it closes without a response; the test waits 11s only.
		{"headers never finished", "GET / HTTP/1.1\r\nHost: x\r\n",
			lbOutcome{silent: true}, closed},
	}

	const slowWait = 11 * time.Second
	var wg sync.WaitGroup
	for _, tc := range cases {
		want := tc.nginx
		if c.lbKind == "haproxy" {
			want = tc.haproxy
		}
		wg.Go(func() {
			wait := 5 * time.Second
			if tc.name == "headers never finished" {
				wait = slowWait
			}
			if err := checkLBAnswer(addr, tc.raw, want, wait); err != nil {
				t.Errorf("%s through %s: %v", tc.name, c.lbKind, err)
			}
		})
	}
	wg.Wait()
}

// checkLBAnswer sends raw on a new connection to addr and checks what comes
// back within wait against want.
func checkLBAnswer(addr, raw string, want lbOutcome, wait time.Duration) error {
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(wait))
	if _, err := io.WriteString(conn, raw); err != nil {
		return err
	}
	switch {
	case want.closed, want.silent:
		b, err := io.ReadAll(conn)
		var ne net.Error
		timedOut := errors.As(err, &ne) && ne.Timeout()
		switch {
		case len(b) > 0:
			return fmt.Errorf("got %q, want the connection closed without a response", trim(b))
		case want.closed && timedOut:
			return fmt.Errorf("nothing within %v, want the connection closed", wait)
		case want.silent && !timedOut:
			return fmt.Errorf("connection closed (%v), want no answer within %v", err, wait)
		case err != nil && !timedOut && !isReset(err):
			return err
		}
		return nil
	case want.bodyOnly:
		b, err := io.ReadAll(conn)
		if err != nil && !isReset(err) {
			return fmt.Errorf("read: %v (got %q)", err, trim(b))
		}
		if bytes.HasPrefix(b, []byte("HTTP/")) {
			return fmt.Errorf("got a status line, want an HTTP/0.9 answer (body only): %q", trim(b))
		}
		return checkErrorBody(b, want.code)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return fmt.Errorf("no HTTP response: %v", err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	for _, s := range resp.Header.Values("Server") {
		if strings.ContainsAny(s, "0123456789") {
			return fmt.Errorf("Server: %q names a version", s)
		}
	}
	instance := resp.Header.Get("X-Instance-ID")
	if resp.StatusCode != want.status {
		return fmt.Errorf("got %d from %q (%s): %q, want %d", resp.StatusCode, instance, resp.Header.Get("Content-Type"), trim(body), want.status)
	}
	if want.app != (instance != "") {
		return fmt.Errorf("X-Instance-ID %q: want an answer of the app %v", instance, want.app)
	}
	ct := resp.Header.Get("Content-Type")
	if want.appText {
		// The known exception: the app's net/http answered, as text.
		if !strings.HasPrefix(ct, "text/plain") || instance != "" {
			return fmt.Errorf("got %s from %q: %q, want the app's net/http text error (an exception that no longer holds: update the test)", ct, instance, trim(body))
		}
		return nil
	}
	if resp.StatusCode < 400 {
		return nil
	}
	if ct != "application/json" && !strings.HasPrefix(ct, "application/json;") {
		return fmt.Errorf("Content-Type %q, want application/json: %q", ct, trim(body))
	}
	return checkErrorBody(body, want.code)
}

// checkErrorBody checks the app's JSON error shape, and the code when want
// is not "".
func checkErrorBody(b []byte, want string) error {
	var e struct {
		Error *struct {
			Code    string `json:"code"`
			Message string `json:"message"`
		} `json:"error"`
		RequestID *string `json:"request_id"`
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return fmt.Errorf("body is not JSON (%v): %q", err, trim(b))
	}
	switch {
	case e.Error == nil || e.Error.Code == "" || e.Error.Message == "" || e.RequestID == nil:
		return fmt.Errorf("body is not the app's error shape: %q", trim(b))
	case want != "" && e.Error.Code != want:
		return fmt.Errorf("code %q, want %q: %q", e.Error.Code, want, trim(b))
	}
	return nil
}

// isReset: a load balancer that closes with unread input left sends a reset.
func isReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET)
}

func trim(b []byte) []byte {
	if len(b) > 200 {
		return append(b[:200:200], "..."...)
	}
	return b
}
