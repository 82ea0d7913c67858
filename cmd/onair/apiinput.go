package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Bounds of what the admin API accepts from outside.
const (
	maxAPIBody      = 4096
	maxBanSeconds   = 365 * 24 * 60 * 60 // a year; an unban lifts a ban early
	maxReasonLength = 500                // characters, as chat's messages
)

// takedownRequest is a validated takedown body.
type takedownRequest struct {
	reason string
	ban    time.Duration
}

// decodeTakedown reads {"reason": "...", "ban_seconds": N}. Every value is
// checked here, so that nothing from outside reaches the hub unbounded: a
// number too big for a duration once turned into a negative one, silently no
// ban. The error is the client's message.
func decodeTakedown(w http.ResponseWriter, r *http.Request) (takedownRequest, error) {
	var body struct {
		Reason     *string         `json:"reason"`
		BanSeconds json.RawMessage `json:"ban_seconds"`
	}
	req := takedownRequest{reason: "taken down by an administrator"}
	if err := decodeBody(w, r, &body, `{"reason": "...", "ban_seconds": N}`); err != nil {
		return req, err
	}
	if body.Reason != nil && *body.Reason != "" {
		if err := checkText("reason", *body.Reason, maxReasonLength); err != nil {
			return req, err
		}
		req.reason = *body.Reason
	}
	if body.BanSeconds != nil {
		secs, err := wholeSeconds(string(body.BanSeconds), maxBanSeconds)
		if err != nil {
			return req, fmt.Errorf("ban_seconds %s", err)
		}
		req.ban = time.Duration(secs) * time.Second
	}
	return req, nil
}

// decodeBody reads r's JSON body into dst: at most maxAPIBody bytes, one
// object, no fields dst does not have. An empty body leaves dst as it is.
// The error is the client's message; shape shows the body expected.
func decodeBody(w http.ResponseWriter, r *http.Request, dst any, shape string) error {
	if r.ContentLength == 0 {
		return nil
	}
	dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, maxAPIBody))
	dec.DisallowUnknownFields()
	err := dec.Decode(dst)
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		return fmt.Errorf("body larger than %d bytes", maxAPIBody)
	case errors.Is(err, io.EOF):
		return nil // an empty body takes the defaults
	case err != nil:
		return fmt.Errorf("body must be JSON %s: %v", shape, err)
	case dec.More():
		return errors.New("body must hold one JSON object")
	}
	return nil
}

// checkText checks a free-text field from outside: valid UTF-8, at most max characters.
func checkText(field, s string, max int) error {
	if !utf8.ValidString(s) || utf8.RuneCountInString(s) > max {
		return fmt.Errorf("%s must be valid UTF-8 of at most %d characters", field, max)
	}
	return nil
}

// wholeSeconds parses a JSON value that must be a number of seconds: whole,
// from 0 to max. A string, even of digits, is not a number.
func wholeSeconds(s string, max int64) (int64, error) {
	f, err := strconv.ParseFloat(s, 64)
	switch {
	case err != nil || math.IsNaN(f) || math.IsInf(f, 0) || strings.HasPrefix(s, `"`):
		return 0, fmt.Errorf("must be a number of seconds from 0 to %d, got %s", max, s)
	case f < 0 || f > float64(max):
		return 0, fmt.Errorf("must be from 0 to %d seconds (%s), got %s", max, time.Duration(max)*time.Second, s)
	case f != math.Trunc(f):
		return 0, fmt.Errorf("must be a whole number of seconds, got %s", s)
	}
	return int64(f), nil
}
