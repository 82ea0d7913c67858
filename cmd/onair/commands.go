package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/onairhq/onair/catalog"
	"github.com/onairhq/onair/chat"
	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/moderation"
)

// tokenCommand prints a chat moderator token signed with the server's secret, or revokes one.
func tokenCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) > 0 && args[0] == "revoke" {
		return revokeCommand(args[1:], stdout, stderr)
	}
	if len(args) == 0 || args[0] != "moderator" {
		return errors.New("usage: onair token moderator --channel NAME [--ttl 24h] [--data-dir DIR]\n       onair token revoke TOKEN-OR-ID [--data-dir DIR | --redis-url URL]")
	}
	fs := flag.NewFlagSet("onair token moderator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	channel := fs.String("channel", "", "channel the token moderates")
	ttl := fs.Duration("ttl", 24*time.Hour, fmt.Sprintf("how long the token is valid (at most %v)", chat.MaxModeratorTokenTTL))
	dataDir := fs.String("data-dir", firstSet(envLookup("ONAIR_DATA_DIR"), defaultConfig().DataDir), "data directory holding the server's secret")
	secretFlag := fs.String("secret", envLookup("ONAIR_SECRET"), "the server's secret, if set in its configuration")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "secret" {
			fmt.Fprintln(stderr, "onair: warning: --secret on the command line is readable by every local user (ps); set ONAIR_SECRET or use --data-dir instead")
		}
	})
	if !ingest.ValidChannelName(*channel) {
		return errors.New("--channel NAME is required ([a-z0-9_-]{1,64})")
	}
	if *ttl <= 0 || *ttl > chat.MaxModeratorTokenTTL {
		return fmt.Errorf("--ttl must be positive and at most %v, got %v", chat.MaxModeratorTokenTTL, *ttl)
	}
	secret := *secretFlag
	if secret == "" {
		st, err := loadState(*dataDir)
		if err != nil {
			return err
		}
		secret = st.Secret
	}
	tok := chat.SignModeratorToken([]byte(secret), *channel, *ttl)
	t, err := chat.ParseModeratorToken(tok)
	if err != nil {
		return err
	}
	fmt.Fprintln(stdout, tok)
	fmt.Fprintf(stderr, "token id %s, valid until %s; revoke it with: onair token revoke %s\n", t.ID, t.Expires.UTC().Format(time.RFC3339), t.ID)
	return nil
}

// revokeCommand records a moderator token as revoked where the servers look: in Redis
// when they share one, else in the data directory.
func revokeCommand(args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("onair token revoke", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", firstSet(envLookup("ONAIR_DATA_DIR"), defaultConfig().DataDir), "data directory of a server without Redis")
	redisURL := fs.String("redis-url", envLookup("ONAIR_REDIS_URL"), "the servers' Redis, if they use one")
	// The token or id may come before or after the flags.
	var target string
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		target, args = args[0], args[1:]
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	if target == "" && fs.NArg() == 1 {
		target = fs.Arg(0)
	} else if fs.NArg() > 0 {
		return errors.New("usage: onair token revoke TOKEN-OR-ID [--data-dir DIR | --redis-url URL]")
	}
	// A whole token says until when its revocation matters; an id alone is kept for the
	// longest lifetime a token can have.
	id, until := target, time.Now().Add(chat.MaxModeratorTokenTTL)
	if t, err := chat.ParseModeratorToken(target); err == nil {
		id, until = t.ID, t.Expires
	}
	var rev chat.Revocations
	if *redisURL != "" {
		r, err := chat.NewRedisRevocations(*redisURL)
		if err != nil {
			return err
		}
		defer r.Close()
		rev = r
	} else {
		if _, err := os.Stat(*dataDir); err != nil {
			return fmt.Errorf("data directory: %w", err)
		}
		r, err := chat.NewFileRevocations(revokedTokensPath(*dataDir))
		if err != nil {
			return err
		}
		rev = r
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := rev.Revoke(ctx, id, until); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "revoked moderator token %s\n", id)
	return nil
}

// moderationCommand runs moderation helpers: "hash IMAGE..." prints blocklist lines.
func moderationCommand(args []string, stdout io.Writer) error {
	if len(args) < 2 || args[0] != "hash" {
		return errors.New("usage: onair moderation hash IMAGE...")
	}
	for _, path := range args[1:] {
		h, err := moderation.HashImageFile(path)
		if err != nil {
			return fmt.Errorf("hash %s: %w", path, err)
		}
		fmt.Fprintf(stdout, "%016x  # %s\n", h, path)
	}
	return nil
}

// keyCommand shows the stream key onair generated for its default channel.
// "onair key show" reads it from the data directory, so the key need not be
// printed at every start.
func keyCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "show" {
		return errors.New("usage: onair key show [--data-dir DIR]")
	}
	fs := flag.NewFlagSet("onair key show", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", firstSet(envLookup("ONAIR_DATA_DIR"), defaultConfig().DataDir), "data directory of the server")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	st, ok, err := readState(*dataDir)
	if err != nil {
		return err
	}
	if !ok || st.DefaultKey == "" {
		return fmt.Errorf("no generated stream key in %s (onair generates one at its first start without channels; keys of configured channels are in your configuration)", *dataDir)
	}
	// The generated channel is one of the API's channels: its key may have
	// been rotated or revoked there since (readable here without Redis only).
	store := catalog.NewFileStore(filepath.Join(*dataDir, catalogFile))
	if seeded, err := store.Seeded(); err != nil {
		return err
	} else if seeded {
		chans, err := store.List(context.Background())
		if err != nil {
			return err
		}
		i := slices.IndexFunc(chans, func(c catalog.Channel) bool { return c.Name == st.DefaultChannel })
		switch {
		case i < 0:
			return fmt.Errorf("channel %q was deleted through the API; its generated key no longer publishes", st.DefaultChannel)
		case !chans[i].HasKey(st.DefaultKey):
			return fmt.Errorf("the key generated for channel %q at the first start was rotated or revoked through the API: it no longer publishes, and only the API's answer showed the new key", st.DefaultChannel)
		}
	}
	fmt.Fprintf(stderr, "stream key of channel %q (from %s):\n", st.DefaultChannel, filepath.Join(*dataDir, stateFile))
	fmt.Fprintln(stdout, st.DefaultKey)
	return nil
}

// configCommand runs "onair config check FILE": it reads a configuration
// file as serve would (over the defaults, without the environment or flags)
// and names every problem with the setting and what it allows.
func configCommand(args []string, stdout io.Writer) error {
	if len(args) != 2 || args[0] != "check" {
		return errors.New("usage: onair config check FILE")
	}
	path := args[1]
	problems := configProblems(path)
	if len(problems) == 0 {
		fmt.Fprintf(stdout, "%s: ok\n", path)
		return nil
	}
	for _, p := range problems {
		fmt.Fprintf(stdout, "%s: %s\n", path, p)
	}
	return fmt.Errorf("%s: %d problem(s)", path, len(problems))
}

// configProblems lists what is wrong with the configuration file at path,
// each with the setting's name and, where it has a fixed set of values or a
// range, what it allows.
func configProblems(path string) []string {
	cfg := defaultConfig()
	var errs []error
	if err := cfg.loadFile(path); err != nil {
		errs = append(errs, err)
	}
	errs = append(errs, cfg.validate())
	help := map[string]string{}
	for _, f := range cfg.fields() {
		help[f.key] = f.help
	}
	var out []string
	for _, err := range errs {
		for _, e := range unjoin(err) {
			// Each line starts with the file's name already.
			msg := strings.TrimPrefix(e.Error(), "config file "+path+": ")
			msg = strings.ReplaceAll(msg, " in config file "+path, "")
			// Name what the setting is for, so the line stands on its own.
			if key, ok := settingOf(msg); ok && help[key] != "" && !strings.Contains(msg, "unknown key") {
				msg += " — " + key + ": " + help[key]
			}
			out = append(out, msg)
		}
	}
	return out
}

// unjoin flattens errors.Join'd errors.
func unjoin(err error) []error {
	if err == nil {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var out []error
		for _, e := range j.Unwrap() {
			out = append(out, unjoin(e)...)
		}
		return out
	}
	return []error{err}
}

// settingOf finds the setting an error message names ("invalid setting KEY ...").
func settingOf(msg string) (string, bool) {
	_, rest, ok := strings.Cut(msg, "invalid setting ")
	if !ok {
		return "", false
	}
	key, _, _ := strings.Cut(rest, " ")
	return strings.TrimSuffix(key, ":"), true
}
