package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"time"
)

// healthcheckTimeout bounds one check: a node that takes longer to say it is
// ready is not, as far as a container runtime is concerned.
const healthcheckTimeout = 2 * time.Second

// healthcheckCommand runs "onair healthcheck [URL]": it asks a node's
// /readyz (or the URL given) and fails unless the answer is 2xx. The
// container image has no curl; Docker's HEALTHCHECK and compose's
// healthcheck run this instead.
func healthcheckCommand(args []string, stdout io.Writer) error {
	if len(args) > 1 {
		return errors.New("usage: onair healthcheck [URL] (default http://127.0.0.1:8080/readyz, or the port of ONAIR_HTTP_ADDR)")
	}
	target := ""
	if len(args) == 1 {
		target = args[0]
	} else {
		// The node's own settings say where it listens; a broken configuration
		// still names its http-addr, and serve reports the rest.
		cfg, _ := loadConfig(flag.NewFlagSet("healthcheck", flag.ContinueOnError), nil, os.Getenv)
		target = healthcheckURL(cfg.HTTPAddr)
	}
	status, err := healthcheck(target, healthcheckTimeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: %s\n", target, status)
	return nil
}

// healthcheckURL is the /readyz a node listening on httpAddr answers on
// loopback (or on the one address it is bound to).
func healthcheckURL(httpAddr string) string {
	host, port, err := net.SplitHostPort(httpAddr)
	if err != nil || port == "" {
		host, port = "", "8080"
	}
	if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
		host = "127.0.0.1"
	}
	return (&url.URL{Scheme: "http", Host: net.JoinHostPort(host, port), Path: "/readyz"}).String()
}

// healthcheck asks target once and returns its status when it is 2xx.
// Redirects are not followed: /readyz never redirects, so one means the URL
// reaches something else.
func healthcheck(target string, timeout time.Duration) (string, error) {
	u, err := url.Parse(target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return "", fmt.Errorf("healthcheck: %q is not an http(s) URL", target)
	}
	client := &http.Client{
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	resp, err := client.Get(target)
	if err != nil {
		return "", fmt.Errorf("healthcheck: %w", err)
	}
	defer resp.Body.Close()
	io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fmt.Errorf("healthcheck %s: %s", target, resp.Status)
	}
	return resp.Status, nil
}
