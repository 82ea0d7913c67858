package main

import (
	"flag"
	"log/slog"
	"net/url"
)

// secretKeys are the settings that hold a secret outright.
var secretKeys = map[string]bool{"admin-token": true, "secret": true, "moderation-webhook-secret": true, "events-webhook-secret": true, "channel": true}

// urlKeys are the settings whose URL may carry a password.
var urlKeys = map[string]bool{"redis-url": true, "publish-auth-webhook": true, "moderation-webhook": true, "events-webhook": true}

// secretFlags names the settings given as command-line flags that carry a
// secret: every local user can read a process's arguments (ps, /proc/PID/cmdline).
// Flags win over the file and the environment, so cfg holds the flags' values.
func secretFlags(fs *flag.FlagSet, cfg Config) []string {
	values := map[string]string{}
	for _, f := range cfg.fields() {
		if s, ok := f.v.Interface().(string); ok {
			values[f.key] = s
		}
	}
	var out []string
	fs.Visit(func(f *flag.Flag) {
		switch {
		case secretKeys[f.Name]:
		case urlKeys[f.Name] && urlHasPassword(values[f.Name]):
		default:
			return
		}
		out = append(out, f.Name)
	})
	return out
}

// warnSecretFlags logs, once per setting, that a secret was given as a flag.
func warnSecretFlags(fs *flag.FlagSet, cfg Config, log *slog.Logger) {
	for _, key := range secretFlags(fs, cfg) {
		log.Warn("a secret was given as a command-line flag, which every local user can read (ps, /proc); set it in the config file or the environment instead",
			"setting", key, "flag", "--"+key, "env", envName(key))
	}
}

func urlHasPassword(s string) bool {
	u, err := url.Parse(s)
	if err != nil {
		return false
	}
	_, ok := u.User.Password()
	return ok
}
