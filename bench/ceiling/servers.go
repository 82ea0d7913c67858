package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/onairhq/onair/bench/internal/machine"
	"github.com/onairhq/onair/bench/internal/procstat"
	"github.com/onairhq/onair/load"
)

// server is one running system under test, fresh for each trial.
type server interface {
	// rtmpURL is the application publishers connect to.
	rtmpURL() string
	// stream is publisher i's stream name and channel.
	stream(i int) load.Stream
	// playlistURL is where a player starts, with {channel} for the channel.
	playlistURL() string
	// pid is the server's main process; its descendants count too.
	pid() int
	// files is the memory its HLS files take (0 when they are in its RSS).
	files() int64
	// exited says whether the server died during the trial.
	exited() (bool, error)
	stop()
}

// system starts a server of one kind.
type system struct {
	name    string
	version string
	start   func(ctx context.Context, dir string, n int) (server, error)
}

// ports picks a free RTMP and HTTP port.
func ports() (int, int, error) {
	rp, err := procstat.FreePort()
	if err != nil {
		return 0, 0, err
	}
	hp, err := procstat.FreePort()
	return rp, hp, err
}

// startTimeout bounds a server's start, until its HTTP port answers.
const startTimeout = 15 * time.Second

// start starts a server in the directory of logPath, where its output goes
// (MediaMTX, for one, writes files into its working directory).
func start(logPath, name string, args ...string) (*procstat.Proc, error) {
	return procstat.Start(procstat.Command{Name: name, Args: args, Dir: filepath.Dir(logPath), Log: logPath})
}

// onair runs `onair serve` with n channels b0.. (keys benchkey0000..) from a
// configuration file and no per-IP connection limit: every publisher
// comes from 127.0.0.1.
type onairServer struct {
	p      *procstat.Proc
	rp, hp int
}

func onairSystem(bin string, extra []string) system {
	return system{
		name:    "onair",
		version: strings.TrimPrefix(machine.Output(bin, "version"), "onair "),
		start: func(ctx context.Context, dir string, n int) (server, error) {
			rp, hp, err := ports()
			if err != nil {
				return nil, err
			}
			var cfg strings.Builder
			cfg.WriteString("channels:\n")
			for i := range n {
				fmt.Fprintf(&cfg, "  - \"b%d:benchkey%04d\"\n", i, i)
			}
			cfgPath := filepath.Join(dir, "onair.yaml")
			if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
				return nil, err
			}
			args := append([]string{"serve", "--config", cfgPath,
				"--rtmp-addr", "127.0.0.1:" + strconv.Itoa(rp),
				"--http-addr", "127.0.0.1:" + strconv.Itoa(hp),
				"--data-dir", filepath.Join(dir, "data"),
				"--log-level", "warn",
				"--rtmp-conns-per-ip", "-1",
			}, extra...)
			p, err := start(filepath.Join(dir, "onair.log"), bin, args...)
			if err != nil {
				return nil, err
			}
			s := &onairServer{p: p, rp: rp, hp: hp}
			if err := procstat.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/healthz", hp), startTimeout); err != nil {
				s.stop()
				return nil, fmt.Errorf("onair did not start (see %s): %w", filepath.Join(dir, "onair.log"), err)
			}
			return s, nil
		},
	}
}

func (s *onairServer) rtmpURL() string { return fmt.Sprintf("rtmp://127.0.0.1:%d/live", s.rp) }
func (s *onairServer) stream(i int) load.Stream {
	return load.Stream{Name: fmt.Sprintf("benchkey%04d", i), Channel: fmt.Sprintf("b%d", i)}
}
func (s *onairServer) playlistURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/hls/{channel}/index.m3u8", s.hp)
}
func (s *onairServer) pid() int              { return s.p.Pid() }
func (s *onairServer) files() int64          { return 0 }
func (s *onairServer) exited() (bool, error) { return s.p.Exited() }
func (s *onairServer) stop()                 { _ = s.p.Stop() }

// nginxConf is nginx-rtmp with HLS on, cut like onair's default output: 1 s
// fragments (at the 1 s keyframes) and a 7 s playlist, served by nginx's
// own http from a directory on tmpfs.
const nginxConf = `load_module /usr/lib/nginx/modules/ngx_rtmp_module.so;
worker_processes auto;
worker_rlimit_nofile 65536;
daemon off;
master_process on;
pid {{DIR}}/nginx.pid;
error_log {{DIR}}/nginx-error.log warn;
events { worker_connections 16384; }
rtmp {
    server {
        listen 127.0.0.1:{{RTMP}};
        chunk_size 4096;
        application live {
            live on;
            record off;
            hls on;
            hls_path {{HLS}};
            hls_nested on;
            hls_fragment 1s;
            hls_playlist_length 7s;
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
        location /hls/ {
            alias {{HLS}}/;
            types { application/vnd.apple.mpegurl m3u8; video/mp2t ts; }
            add_header Cache-Control no-cache;
        }
    }
}
`

type nginxServer struct {
	p      *procstat.Proc
	hls    string
	rec    string // recordings (empty without -record)
	rp, hp int
}

// nginxRecord replaces "record off;" when broadcasts are recorded: nginx-rtmp
// writes each as FLV, its only recording format.
const nginxRecord = "record all;\n            record_path {{REC}};\n            record_unique on;"

func nginxSystem(bin string, record bool) system {
	version := strings.TrimPrefix(machine.Output(bin, "-v"), "nginx version: ")
	version += ", libnginx-mod-rtmp " + machine.Output("dpkg-query", "-W", "-f", "${Version}", "libnginx-mod-rtmp")
	return system{
		name:    "nginx-rtmp",
		version: version,
		start: func(ctx context.Context, dir string, n int) (server, error) {
			rp, hp, err := ports()
			if err != nil {
				return nil, err
			}
			// HLS files on tmpfs, where they are memory (counted beside RSS).
			hls, err := os.MkdirTemp("/dev/shm", "ceiling-nginx-hls-")
			if err != nil {
				return nil, err
			}
			// Recordings on the disk, in a directory nginx's workers (nobody) can reach.
			rec, err := os.MkdirTemp("", "ceiling-nginx-rec-")
			if err != nil {
				return nil, err
			}
			for _, d := range []string{hls, rec, filepath.Join(dir, "tmp")} {
				// nginx's workers run as nobody when started as root.
				if err := os.MkdirAll(d, 0o777); err != nil {
					return nil, err
				}
				if err := os.Chmod(d, 0o777); err != nil {
					return nil, err
				}
			}
			conf := nginxConf
			if record {
				conf = strings.Replace(conf, "record off;", nginxRecord, 1)
			}
			conf = strings.NewReplacer("{{DIR}}", dir, "{{REC}}", rec, "{{HLS}}", hls, "{{RTMP}}", strconv.Itoa(rp), "{{HTTP}}", strconv.Itoa(hp)).Replace(conf)
			confPath := filepath.Join(dir, "nginx.conf")
			if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
				return nil, err
			}
			p, err := start(filepath.Join(dir, "nginx.log"), bin, "-p", dir, "-c", confPath)
			if err != nil {
				os.RemoveAll(hls)
				os.RemoveAll(rec)
				return nil, err
			}
			s := &nginxServer{p: p, hls: hls, rec: rec, rp: rp, hp: hp}
			if err := procstat.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", hp), startTimeout); err != nil {
				s.stop()
				return nil, fmt.Errorf("nginx did not start (see %s): %w", dir, err)
			}
			return s, nil
		},
	}
}

func (s *nginxServer) rtmpURL() string { return fmt.Sprintf("rtmp://127.0.0.1:%d/live", s.rp) }
func (s *nginxServer) stream(i int) load.Stream {
	return load.Stream{Name: fmt.Sprintf("s%d", i), Channel: fmt.Sprintf("s%d", i)}
}
func (s *nginxServer) playlistURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/hls/{channel}/index.m3u8", s.hp)
}
func (s *nginxServer) pid() int              { return s.p.Pid() }
func (s *nginxServer) files() int64          { return procstat.DirBytes(s.hls) }
func (s *nginxServer) exited() (bool, error) { return s.p.Exited() }
func (s *nginxServer) stop() {
	_ = s.p.Stop()
	os.RemoveAll(s.hls)
	os.RemoveAll(s.rec)
}

// mediamtxConf is MediaMTX with RTMP in and its default LL-HLS out (1 s
// segments, 200 ms parts, 7 segments), every other protocol off. Muxers
// run for every stream from its start (hlsAlwaysRemux), as onair and
// nginx-rtmp package every stream, not only those someone watches.
const mediamtxConf = `logLevel: warn
logDestinations: [stdout]
api: false
metrics: false
pprof: false
playback: false
rtsp: false
rtmp: true
rtmpAddress: 127.0.0.1:{{RTMP}}
hls: true
hlsAddress: 127.0.0.1:{{HTTP}}
hlsAlwaysRemux: true
hlsVariant: lowLatency
hlsSegmentCount: 7
hlsSegmentDuration: 1s
hlsPartDuration: 200ms
webrtc: false
srt: false
paths:
  all_others:
`

type mediamtxServer struct {
	p      *procstat.Proc
	rp, hp int
}

func mediamtxSystem(bin string) system {
	return system{
		name:    "MediaMTX",
		version: machine.Output(bin, "--version"),
		start: func(ctx context.Context, dir string, n int) (server, error) {
			rp, hp, err := ports()
			if err != nil {
				return nil, err
			}
			conf := strings.NewReplacer("{{RTMP}}", strconv.Itoa(rp), "{{HTTP}}", strconv.Itoa(hp)).Replace(mediamtxConf)
			confPath := filepath.Join(dir, "mediamtx.yml")
			if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
				return nil, err
			}
			p, err := start(filepath.Join(dir, "mediamtx.log"), bin, confPath)
			if err != nil {
				return nil, err
			}
			s := &mediamtxServer{p: p, rp: rp, hp: hp}
			if err := procstat.WaitHTTP(ctx, fmt.Sprintf("http://127.0.0.1:%d/", hp), startTimeout); err != nil {
				s.stop()
				return nil, fmt.Errorf("MediaMTX did not start (see %s): %w", dir, err)
			}
			return s, nil
		},
	}
}

func (s *mediamtxServer) rtmpURL() string { return fmt.Sprintf("rtmp://127.0.0.1:%d/live", s.rp) }
func (s *mediamtxServer) stream(i int) load.Stream {
	return load.Stream{Name: fmt.Sprintf("s%d", i), Channel: fmt.Sprintf("s%d", i)}
}
func (s *mediamtxServer) playlistURL() string {
	return fmt.Sprintf("http://127.0.0.1:%d/live/{channel}/index.m3u8", s.hp)
}
func (s *mediamtxServer) pid() int              { return s.p.Pid() }
func (s *mediamtxServer) files() int64          { return 0 }
func (s *mediamtxServer) exited() (bool, error) { return s.p.Exited() }
func (s *mediamtxServer) stop()                 { _ = s.p.Stop() }
