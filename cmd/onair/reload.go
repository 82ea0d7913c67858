package main

import (
	"flag"
	"io"
	"log/slog"

	"github.com/onairhq/onair/ingest"
)

// reloadChannels re-reads the configuration as at start (file, environment,
// command line) and hands its channel list to ingest, on SIGHUP. Live
// broadcasts go on; removed channels end; changed keys apply to the next
// publish. Only channels and keys change: any other setting takes a restart.
// An invalid configuration is refused and the running one kept.
func reloadChannels(args []string, st state, hub *ingest.Hub, log *slog.Logger) {
	fs := flag.NewFlagSet("onair serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cfg, err := loadConfig(fs, args, envLookup)
	if err != nil {
		log.Error("reload refused: the configuration is invalid; the running one stays", "err", err)
		return
	}
	names, keys, _ := cfg.channelKeys() // validated in loadConfig
	if len(names) == 0 {
		names = []string{st.DefaultChannel}
		keys = map[string][]string{st.DefaultChannel: {st.DefaultKey}}
	}
	var channels []ingest.ChannelConfig
	for _, n := range names {
		channels = append(channels, ingest.ChannelConfig{Name: n, Keys: keys[n]})
	}
	if err := hub.SetChannels(channels); err != nil {
		log.Error("reload refused", "err", err)
		return
	}
	log.Info("configuration reloaded: channels and stream keys (other settings take a restart)", "channels", len(names))
}
