package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/onairhq/onair/health"
)

// statusTimeout bounds each request of "onair status".
const statusTimeout = 5 * time.Second

// statusCommand runs "onair status": one screen about a running node, read
// from its API: every channel with its state, viewers, uptime, picture and
// bitrate, and the health warnings of the live ones.
func statusCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair status", flag.ContinueOnError)
	fs.SetOutput(stderr)
	// The node's own settings say where it listens and its admin token.
	cfg, _ := loadConfig(flag.NewFlagSet("status", flag.ContinueOnError), nil, envLookup)
	base := fs.String("url", strings.TrimSuffix(healthcheckURL(cfg.HTTPAddr), "/readyz"), "base URL of the node's HTTP API (default from http-addr)")
	token := fs.String("admin-token", "", "admin bearer token (default ONAIR_ADMIN_TOKEN, the config file's admin-token, or the data directory's)")
	dataDir := fs.String("data-dir", cfg.DataDir, "data directory holding the generated admin token")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return errors.New("usage: onair status [--url URL] [--admin-token TOKEN] [--data-dir DIR]")
	}
	tok := firstSet(*token, cfg.AdminToken)
	if tok == "" {
		st, _, err := readState(*dataDir)
		if err != nil {
			return err
		}
		tok = st.AdminToken
	}
	if tok == "" {
		return fmt.Errorf("no admin token: pass --admin-token, set ONAIR_ADMIN_TOKEN, or point --data-dir at the server's data directory")
	}
	c := statusClient{base: strings.TrimSuffix(*base, "/"), token: tok, http: &http.Client{Timeout: statusTimeout}}
	return c.print(stdout)
}

// statusClient reads a node's API.
type statusClient struct {
	base, token string
	http        *http.Client
}

// get fetches path into v. It returns the HTTP status; err is set for anything but 2xx.
func (c statusClient) get(path string, auth bool, v any) (int, error) {
	req, err := http.NewRequest("GET", c.base+path, nil)
	if err != nil {
		return 0, fmt.Errorf("--url %q: %w", c.base, err)
	}
	if auth {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return 0, fmt.Errorf("cannot reach onair at %s: %w", c.base, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	if resp.StatusCode/100 != 2 {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e)
		return resp.StatusCode, fmt.Errorf("%s: %s %s", path, resp.Status, e.Error)
	}
	if err := json.Unmarshal(body, v); err != nil {
		return resp.StatusCode, fmt.Errorf("%s: %w (is %s an onair node?)", path, err, c.base)
	}
	return resp.StatusCode, nil
}

// print writes the screen.
func (c statusClient) print(w io.Writer) error {
	var list struct {
		Channels []channelView `json:"channels"`
	}
	if _, err := c.get("/api/v1/channels", false, &list); err != nil {
		return err
	}
	reports := map[string]*health.Report{}
	checked := false
	for _, ch := range list.Channels {
		if ch.State != "live" && ch.State != "reconnecting" {
			continue
		}
		var r health.Report
		status, err := c.get("/api/v1/channels/"+url.PathEscape(ch.Name)+"/health", true, &r)
		switch {
		case status == http.StatusUnauthorized || status == http.StatusForbidden:
			return fmt.Errorf("the admin token was refused (%w): pass --admin-token or set ONAIR_ADMIN_TOKEN", err)
		case err == nil:
			reports[ch.Name] = &r
		case status == 0:
			return err
		}
		checked = true
	}
	if !checked && len(list.Channels) > 0 {
		// Nothing live: still say now whether the token is good.
		var r health.Report
		status, err := c.get("/api/v1/channels/"+url.PathEscape(list.Channels[0].Name)+"/health", true, &r)
		if status == http.StatusUnauthorized || status == http.StatusForbidden {
			return fmt.Errorf("the admin token was refused (%w): pass --admin-token or set ONAIR_ADMIN_TOKEN", err)
		} else if status == 0 {
			return err
		}
	}
	writeStatus(w, c.base, list.Channels, reports, time.Now())
	return nil
}

// writeStatus renders the screen.
func writeStatus(w io.Writer, base string, chans []channelView, reports map[string]*health.Report, now time.Time) {
	live, viewers := 0, 0
	for _, ch := range chans {
		if ch.State == "live" || ch.State == "reconnecting" {
			live++
		}
		viewers += ch.Viewers
	}
	fmt.Fprintf(w, "onair at %s: %d channel(s), %d live, %d viewer(s)\n\n", base, len(chans), live, viewers)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CHANNEL\tSTATE\tVIEWERS\tUPTIME\tVIDEO\tFPS\tKEYFRAMES\tBITRATE\tHEALTH")
	for _, ch := range chans {
		uptime, video, fps, keys, rate, verdict := "-", "-", "-", "-", "-", "-"
		if ch.Since != nil {
			uptime = now.Sub(*ch.Since).Round(time.Second).String()
		}
		if ch.Width > 0 {
			video = fmt.Sprintf("%dx%d %s", ch.Width, ch.Height, strings.Join(ch.Codecs, "+"))
		}
		if ch.Bitrate > 0 {
			rate = fmt.Sprintf("%.1f Mbit/s", float64(ch.Bitrate)/1e6)
		}
		if r := reports[ch.Name]; r != nil {
			if v := r.Video; v != nil {
				fps = fmt.Sprintf("%.1f", v.FPS)
				keys = fmt.Sprintf("%.1f s", v.KeyframeInterval.Max)
				if v.Profile != "" {
					video += " " + v.Profile
				}
			}
			switch {
			case !r.Judged:
				verdict = "measuring"
			case len(r.Warnings) == 0:
				verdict = "ok"
			default:
				verdict = fmt.Sprintf("%d warning(s)", len(r.Warnings))
			}
		}
		state := ch.State
		if ch.Reason != "" {
			state += " (" + ch.Reason + ")"
		}
		fmt.Fprintf(tw, "%s\t%s\t%d\t%s\t%s\t%s\t%s\t%s\t%s\n", ch.Name, state, ch.Viewers, uptime, video, fps, keys, rate, verdict)
	}
	tw.Flush()
	first := true
	for _, ch := range chans {
		r := reports[ch.Name]
		if r == nil {
			continue
		}
		for _, warn := range r.Warnings {
			if first {
				fmt.Fprintln(w, "\nWarnings:")
				first = false
			}
			fmt.Fprintf(w, "  %s: %s\n", ch.Name, warn.Message)
		}
	}
}
