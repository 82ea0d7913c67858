package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/onairhq/onair/bench/internal/procstat"
)

// server is one system under test: where to publish, where to read the HLS
// and which processes to measure.
type server interface {
	name() string
	// publishURL is the RTMP URL stream i is published to.
	publishURL(i int) string
	// playlistURL is the media playlist of stream i's video.
	playlistURL(i int) string
	// entryURL is what a player opens for stream i.
	entryURL(i int) string
	// pids are the processes whose CPU and memory count as the server's.
	pids() []int
	stop() error
}

// startTimeout bounds a server's start, until its HTTP port answers.
const startTimeout = 10 * time.Second

// startProc starts name with its output in logPath ("" discards it).
func startProc(name string, logPath string, args ...string) (*procstat.Proc, error) {
	return procstat.Start(procstat.Command{Name: name, Args: args, Log: logPath})
}

// onair runs `onair serve` with nchan channels b0..b{n-1}.
type onairServer struct {
	p                  *procstat.Proc
	rtmpPort, httpPort int
	withChildren       bool
}

func streamKey(i int) string { return fmt.Sprintf("benchkey%02d", i) }

func startOnair(ctx context.Context, bin, dir string, nchan int, extra []string) (*onairServer, error) {
	rp, err := procstat.FreePort()
	if err != nil {
		return nil, err
	}
	hp, err := procstat.FreePort()
	if err != nil {
		return nil, err
	}
	args := []string{"serve",
		"--rtmp-addr", "127.0.0.1:" + strconv.Itoa(rp),
		"--http-addr", "127.0.0.1:" + strconv.Itoa(hp),
		"--data-dir", filepath.Join(dir, "onair-data"),
		"--log-level", "warn",
	}
	args = append(args, extra...)
	for i := range nchan {
		args = append(args, "--channel", fmt.Sprintf("b%d:%s", i, streamKey(i)))
	}
	p, err := startProc(bin, filepath.Join(dir, "onair.log"), args...)
	if err != nil {
		return nil, err
	}
	s := &onairServer{p: p, rtmpPort: rp, httpPort: hp}
	if err := procstat.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", hp), startTimeout); err != nil {
		s.stop()
		return nil, fmt.Errorf("onair did not start (see %s): %w", filepath.Join(dir, "onair.log"), err)
	}
	return s, nil
}

func (s *onairServer) name() string { return "onair" }
func (s *onairServer) publishURL(i int) string {
	return fmt.Sprintf("rtmp://127.0.0.1:%d/live/%s", s.rtmpPort, streamKey(i))
}
func (s *onairServer) playlistURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d/hls/b%d/stream.m3u8", s.httpPort, i)
}
func (s *onairServer) entryURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d/hls/b%d/index.m3u8", s.httpPort, i)
}

// pids is the onair process, plus its children (the moderation decoders)
// when withChildren is set.
func (s *onairServer) pids() []int {
	pid := s.p.Pid()
	if s.withChildren {
		return append([]int{pid}, procstat.Descendants(pid)...)
	}
	return []int{pid}
}
func (s *onairServer) stop() error { return s.p.Stop() }

// nginxServer runs nginx with the RTMP module and HLS on.
type nginxServer struct {
	p                  *procstat.Proc
	dir                string
	rtmpPort, httpPort int
}

// nginxConf is the nginx-rtmp configuration under test: the module's README
// HLS example with 2 s fragments and a 6 s playlist, served by nginx's http.
const nginxConf = `load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes auto;
daemon off;
master_process on;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/nginx-error.log warn;
events { worker_connections 1024; }
rtmp {
    server {
        listen 127.0.0.1:{{RTMP}};
        chunk_size 4096;
        application live {
            live on;
            record off;
            hls on;
            hls_path {{DIR}}/hls;
            hls_nested on;
            hls_fragment 2s;
            hls_playlist_length 6s;
        }
    }
}
http {
    access_log off;
    client_body_temp_path {{DIR}}/tmp;
    proxy_temp_path {{DIR}}/tmp;
    fastcgi_temp_path {{DIR}}/tmp;
    uwsgi_temp_path {{DIR}}/tmp;
    scgi_temp_path {{DIR}}/tmp;
    server {
        listen 127.0.0.1:{{HTTP}};
        location /hls {
            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
            root {{DIR}};
            add_header Cache-Control no-cache;
            add_header Access-Control-Allow-Origin *;
        }
    }
}
`

func startNginx(ctx context.Context, bin, dir string) (*nginxServer, error) {
	rp, err := procstat.FreePort()
	if err != nil {
		return nil, err
	}
	hp, err := procstat.FreePort()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"hls", "tmp"} {
		// nginx's workers run as nobody when started as root.
		if err := os.MkdirAll(filepath.Join(dir, d), 0o777); err != nil {
			return nil, err
		}
		if err := os.Chmod(filepath.Join(dir, d), 0o777); err != nil {
			return nil, err
		}
	}
	conf := strings.NewReplacer("{{DIR}}", dir, "{{RTMP}}", strconv.Itoa(rp), "{{HTTP}}", strconv.Itoa(hp)).Replace(nginxConf)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, err
	}
	p, err := startProc(bin, filepath.Join(dir, "nginx.log"), "-p", dir, "-c", confPath)
	if err != nil {
		return nil, err
	}
	s := &nginxServer{p: p, dir: dir, rtmpPort: rp, httpPort: hp}
	if err := procstat.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", hp), startTimeout); err != nil {
		s.stop()
		return nil, fmt.Errorf("nginx did not start (see %s): %w", dir, err)
	}
	return s, nil
}

func (s *nginxServer) name() string { return "nginx-rtmp" }
func (s *nginxServer) publishURL(i int) string {
	return fmt.Sprintf("rtmp://127.0.0.1:%d/live/s%d", s.rtmpPort, i)
}
func (s *nginxServer) playlistURL(i int) string {
	return fmt.Sprintf("http://127.0.0.1:%d/hls/s%d/index.m3u8", s.httpPort, i)
}
func (s *nginxServer) entryURL(i int) string { return s.playlistURL(i) }

// pids is the master and its workers.
func (s *nginxServer) pids() []int {
	pid := s.p.Pid()
	return append([]int{pid}, procstat.Descendants(pid)...)
}
func (s *nginxServer) stop() error { return s.p.Stop() }

// clearHLS removes nginx's HLS files of stream i, so a new publish starts
// from an empty playlist (nginx-rtmp keeps them after a publisher leaves).
func (s *nginxServer) clearHLS(i int) error {
	return os.RemoveAll(filepath.Join(s.dir, "hls", fmt.Sprintf("s%d", i)))
}
