package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
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
