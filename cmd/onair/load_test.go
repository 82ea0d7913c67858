package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/onairhq/onair/load"
)

func TestLoadStreams(t *testing.T) {
	dir := t.TempDir()
	var yaml bytes.Buffer
	if err := loadChannels([]string{"-n", "3", "-channel", "ch%d", "-key", "key%02d"}, &yaml, &yaml); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	// The YAML onair reads works as a keys file, as do bare keys.
	if err := os.WriteFile(keys, append(yaml.Bytes(), "# a comment\nbare\n"...), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		f    streamFlags
		want []load.Stream
	}{
		{"patterns", streamFlags{n: 2, key: "k%03d", channel: "c%d", first: 5}, []load.Stream{{Name: "k005", Channel: "c5"}, {Name: "k006", Channel: "c6"}}},
		{"key pattern only", streamFlags{n: 1, key: "s%d"}, []load.Stream{{Name: "s0", Channel: "s0"}}},
		{"keys file", streamFlags{keysFile: keys}, []load.Stream{{Name: "key00", Channel: "ch0"}, {Name: "key01", Channel: "ch1"}, {Name: "key02", Channel: "ch2"}, {Name: "bare", Channel: "bare"}}},
		{"keys file, first two", streamFlags{keysFile: keys, n: 2}, []load.Stream{{Name: "key00", Channel: "ch0"}, {Name: "key01", Channel: "ch1"}}},
	}
	for _, c := range cases {
		got, err := c.f.streams()
		if err != nil || !reflect.DeepEqual(got, c.want) {
			t.Errorf("%s: %+v, %v; want %+v", c.name, got, err, c.want)
		}
	}
	f := streamFlags{watchURL: "http://h/hls/{channel}/index.m3u8", sample: 3, watchURLFlagName: "watch"}
	var streams []load.Stream
	for _, ch := range []string{"a", "b", "c", "d", "e", "f"} {
		streams = append(streams, load.Stream{Channel: ch})
	}
	urls, err := f.watchURLs(streams)
	want := []string{"http://h/hls/a/index.m3u8", "http://h/hls/c/index.m3u8", "http://h/hls/e/index.m3u8"}
	if err != nil || !reflect.DeepEqual(urls, want) {
		t.Errorf("sampled URLs %v, %v; want %v", urls, err, want)
	}
}

func TestLoadPlayAndAbandonFlags(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"play"}, "-url and -n"},
		{[]string{"play", "-url", "http://h/hls/c/index.m3u8", "-n", "0"}, "-url and -n"},
		{[]string{"abandon", "-url", "http://h/hls/c/index.m3u8"}, "-url, -metrics"},
		{[]string{"abandon", "-metrics", "http://h/metrics"}, "-url, -metrics"},
		{[]string{"play", "-bogus"}, "flag provided but not defined"},
	}
	for _, c := range cases {
		var out bytes.Buffer
		err := loadCommand(context.Background(), c.args, &out, &out)
		if err == nil || !strings.Contains(err.Error()+out.String(), c.want) {
			t.Errorf("%v: %v (%s), want an error saying %q", c.args, err, out.String(), c.want)
		}
	}
}
