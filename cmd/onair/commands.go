package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"path/filepath"
	"time"

	"github.com/onairhq/onair/chat"
	"github.com/onairhq/onair/ingest"
	"github.com/onairhq/onair/moderation"
)

// tokenCommand prints a chat moderator token signed with the server's secret.
func tokenCommand(args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] != "moderator" {
		return errors.New("usage: onair token moderator --channel NAME [--ttl 720h] [--data-dir DIR]")
	}
	fs := flag.NewFlagSet("onair token moderator", flag.ContinueOnError)
	fs.SetOutput(stderr)
	channel := fs.String("channel", "", "channel the token moderates")
	ttl := fs.Duration("ttl", 30*24*time.Hour, "how long the token is valid")
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
	secret := *secretFlag
	if secret == "" {
		st, err := loadState(*dataDir)
		if err != nil {
			return err
		}
		secret = st.Secret
	}
	fmt.Fprintln(stdout, chat.SignModeratorToken([]byte(secret), *channel, *ttl))
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
	fmt.Fprintf(stderr, "stream key of channel %q (from %s):\n", st.DefaultChannel, filepath.Join(*dataDir, stateFile))
	fmt.Fprintln(stdout, st.DefaultKey)
	return nil
}
