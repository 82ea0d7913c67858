package chat

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// ownRedis runs a throwaway redis-server on port; stop kills it.
// redisPort returns a free port below the kernel's ephemeral range for a
// test's own redis-server. Clients dial it while nothing listens; with a
// port in the ephemeral range, such a dial can be given that very port as its
// source and connect to itself (TCP simultaneous open), holding the port
// so that redis-server cannot bind it (CI failed so once).
func redisPort(t *testing.T) int {
	t.Helper()
	for range 100 {
		port := 20000 + rand.IntN(10000)
		l, err := net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
		if err == nil {
			l.Close()
			return port
		}
	}
	t.Fatal("no free port for redis-server between 20000 and 30000")
	return 0
}

func ownRedis(t *testing.T, port int) (stop func()) {
	t.Helper()
	path, err := exec.LookPath("redis-server")
	if err != nil {
		t.Skip("redis-server not installed; skipping the Redis fault test")
	}
	var out bytes.Buffer
	cmd := exec.Command(path, "--port", strconv.Itoa(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no")
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatalf("starting redis-server: %v", err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	rdb := redis.NewClient(&redis.Options{Addr: fmt.Sprintf("127.0.0.1:%d", port)})
	defer rdb.Close()
	waitFor(t, "own redis-server up", func() bool {
		select {
		case <-exited:
			t.Fatalf("redis-server on port %d exited:\n%s", port, out.String())
		default:
		}
		return rdb.Ping(context.Background()).Err() == nil
	})
	stopped := false
	stop = func() {
		if !stopped {
			stopped = true
			cmd.Process.Kill()
			<-exited
		}
	}
	t.Cleanup(stop)
	return stop
}

func TestRedisKilledAndRestarted(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test is long")
	}
	port := redisPort(t)
	stop := ownRedis(t, port)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	base := runtime.NumGoroutine()

	o := testOptions()
	o.ConnMessages, o.IPMessages = 1000, 1000
	ba := newRedisBus(t, url, "a")
	bb := newRedisBus(t, url, "b")
	oa, ob := o, o
	oa.Bus, ob.Bus = ba, bb
	a, b := startNode(t, oa), startNode(t, ob)
	room := uniqueRoom(t)
	sender, _ := join(t, a, room, "10.6.0.1", "sender")
	local, _ := join(t, a, room, "10.6.0.2", "local")
	remote, _ := join(t, b, room, "10.6.0.3", "remote")

	say := func(text string) { sender.write(map[string]any{"type": "send", "text": text}) }
	expect := func(c *tclient, text string) {
		t.Helper()
		for {
			if m := c.next("msg"); m["text"] == text {
				return
			}
		}
	}
	say("before")
	expect(local, "before")
	expect(remote, "before")

	stop()
	waitFor(t, "node A to notice the outage", func() bool { return a.srv.Health().State == HealthDegraded })
	waitFor(t, "node B to notice the outage", func() bool { return b.srv.Health().State == HealthDegraded })
	during := runtime.NumGoroutine()
	// Local delivery never stops: each message reaches the local viewer promptly.
	for i := 0; i < 20; i++ {
		start := time.Now()
		say(fmt.Sprint("during ", i))
		expect(local, fmt.Sprint("during ", i))
		if d := time.Since(start); d > 500*time.Millisecond {
			t.Fatalf("local delivery during outage took %v", d)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if g := runtime.NumGoroutine(); g > during+5 {
		t.Fatalf("goroutines grew during the outage: %d → %d", during, g)
	}

	ownRedis(t, port) // same port, empty data
	waitFor(t, "node A reconnected", func() bool { return a.srv.Health().State == HealthOK })
	waitFor(t, "node B reconnected", func() bool { return b.srv.Health().State == HealthOK })
	// Cross-node delivery resumes (the re-subscription may take a moment after PING works).
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		text := fmt.Sprint("after ", i)
		say(text)
		got := false
		timeout := time.After(500 * time.Millisecond)
	wait:
		for {
			select {
			case m := <-remote.lines:
				if m["type"] == "msg" && m["text"] == text {
					got = true
					break wait
				}
			case <-timeout:
				break wait
			}
		}
		if got {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("cross-node delivery did not resume")
		}
	}
	// And in order again.
	for i := 0; i < 50; i++ {
		say(fmt.Sprint("order ", i))
	}
	for i := 0; i < 50; i++ {
		expect(remote, fmt.Sprint("order ", i))
	}

	// Everything stops: no goroutine outlives its owner.
	for _, c := range []*tclient{sender, local, remote} {
		c.conn.Close()
	}
	a.stop()
	b.stop()
	ba.Close()
	bb.Close()
	waitFor(t, fmt.Sprintf("goroutines back to %d", base), func() bool { return runtime.NumGoroutine() <= base })
}

// A node started while Redis is down serves its own viewers, and joins the
// other nodes once Redis comes up.
func TestRedisDownAtStart(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test is long")
	}
	if _, err := exec.LookPath("redis-server"); err != nil {
		t.Skip("redis-server not installed")
	}
	port := redisPort(t)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	ba, err := NewRedisBus(context.Background(), url, "a", nil, RedisOptions{PresenceTTL: time.Second})
	if err != nil {
		t.Fatalf("NewRedisBus with Redis down: %v", err)
	}
	t.Cleanup(func() { ba.Close() })
	if ba.Ready() == nil {
		t.Fatal("Ready reports no problem while Redis is down")
	}
	o := testOptions()
	o.Bus = ba
	a := startNode(t, o)
	room := uniqueRoom(t)
	sender, _ := join(t, a, room, "10.7.0.1", "sender")
	local, _ := join(t, a, room, "10.7.0.2", "local")
	sender.write(map[string]any{"type": "send", "text": "while down"})
	for local.next("msg")["text"] != "while down" {
	}

	ownRedis(t, port)
	waitFor(t, "node A to reach Redis", func() bool { return a.srv.Health().State == HealthOK })
	ob := testOptions()
	ob.Bus = newRedisBus(t, url, "b")
	b := startNode(t, ob)
	remote, _ := join(t, b, room, "10.7.0.3", "remote")
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; ; i++ {
		text := fmt.Sprint("after ", i)
		sender.write(map[string]any{"type": "send", "text": text})
		select {
		case m := <-remote.lines:
			if m["type"] == "msg" {
				return // cross-node delivery works
			}
		case <-time.After(500 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatal("no cross-node delivery after Redis came up")
		}
	}
}
