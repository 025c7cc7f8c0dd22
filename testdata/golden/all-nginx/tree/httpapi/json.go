package httpapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"unicode/utf8"
)

// errorBody is the one shape of every error response:
//
//	{"error": {"code": "not_found", "message": "note 7 not found"}, "request_id": "..."}
//
// code is stable and meant for programs; message is for people.
type errorBody struct {
	Error struct {
		Code    string `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	RequestID string `json:"request_id"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, r *http.Request, status int, code, message string) {
	var body errorBody
	body.Error.Code = code
	body.Error.Message = message
	body.RequestID = requestID(r.Context())
	writeJSON(w, status, body)
}

// readJSON decodes a request body into v, refusing unknown fields, trailing
// data and text that is not UTF-8 (encoding/json would silently replace it
// with U+FFFD, and store a title the client never sent). The error it
// returns is fit to show the client.
func readJSON(r *http.Request, v any) error {
	raw, err := io.ReadAll(r.Body) // bounded by the body limit
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return fmt.Errorf("reading the body: %v", err)
	}
	if !utf8.Valid(raw) {
		return errors.New("malformed JSON body: not valid UTF-8")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			return err
		}
		return fmt.Errorf("malformed JSON body: %v", err)
	}
	if dec.More() {
		return errors.New("malformed JSON body: more than one value")
	}
	return nil
}

// writeBodyError answers a failed readJSON: 413 when the body was too large,
// 400 otherwise.
func writeBodyError(w http.ResponseWriter, r *http.Request, err error) {
	var tooBig *http.MaxBytesError
	if errors.As(err, &tooBig) {
		writeError(w, r, http.StatusRequestEntityTooLarge, "too_large",
			fmt.Sprintf("request body is larger than %d bytes", tooBig.Limit))
		return
	}
	writeError(w, r, http.StatusBadRequest, "bad_request", err.Error())
}
