package chat

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// commandCounter counts the Redis commands a client sends, health-check pings aside.
type commandCounter struct{ n atomic.Int64 }

func (h *commandCounter) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *commandCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if cmd.Name() != "ping" {
			h.n.Add(1)
		}
		return next(ctx, cmd)
	}
}
func (h *commandCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(int64(len(cmds)))
		return next(ctx, cmds)
	}
}

// With Redis down, viewer counts come from what the rooms last saw, without a Redis call per
// channel, and chat says it is degraded rather than not ready (item 10).
func TestRedisDownViewerCountsAndHealth(t *testing.T) {
	if testing.Short() {
		t.Skip("fault test is long")
	}
	port := redisPort(t)
	stop := ownRedis(t, port)
	url := fmt.Sprintf("redis://127.0.0.1:%d/0", port)
	bus := newRedisBus(t, url, "health-a")
	o := testOptions()
	o.Bus = bus
	a := startNode(t, o)
	other := startNode(t, func() Options { o := testOptions(); o.Bus = newRedisBus(t, url, "health-b"); return o }())

	// "here": 2 viewers on this node. "there": 3 viewers on the other node only.
	join(t, a, "here", "10.50.0.1", "x")
	join(t, a, "here", "10.50.0.2", "y")
	for i := range 3 {
		join(t, other, "there", fmt.Sprintf("10.50.1.%d", i), "z")
	}
	waitFor(t, "counts seen", func() bool { return a.srv.ViewerCount("here") == 2 && a.srv.ViewerCount("there") == 3 })
	channels := []string{"here", "there"}
	for i := range 20 {
		channels = append(channels, fmt.Sprintf("quiet-%d", i))
	}
	for _, ch := range channels {
		a.srv.ViewerCount(ch)
	}
	if h := a.srv.Health(); h.State != HealthOK || h.Reason != "" {
		t.Fatalf("health %+v", h)
	}

	stop()
	waitFor(t, "the outage noticed", func() bool { return a.srv.Health().State == HealthDegraded })
	h := a.srv.Health()
	if !strings.Contains(h.Reason, "redis unreachable") {
		t.Fatalf("health %+v", h)
	}
	if err := a.srv.Ready(); err != nil {
		t.Fatalf("Ready while degraded: %v", err)
	}
	counter := &commandCounter{}
	bus.rdb.AddHook(counter)
	time.Sleep(3 * o.PresenceInterval) // the rooms' presence reports run meanwhile too
	got := map[string]int{}
	start := time.Now()
	for _, ch := range channels {
		got[ch] = a.srv.ViewerCount(ch)
	}
	t.Logf("%d viewer counts with Redis down in %v", len(channels), time.Since(start))
	if got["here"] != 2 || got["there"] != 3 || got["quiet-0"] != 0 {
		t.Fatalf("counts while Redis is down: %v", got)
	}
	if n := counter.n.Load(); n != 0 {
		t.Fatalf("%d Redis commands while the bus knew Redis was down", n)
	}
	if !strings.Contains(metricsText(t, a), "onair_chat_bus_up 0") {
		t.Fatal("metrics do not show the bus down")
	}
	// Local chat still works.
	c, _ := join(t, a, "here", "10.50.0.3", "w")
	c.write(map[string]any{"type": "send", "text": "still here"})
	for c.next("msg")["text"] != "still here" {
	}

	a.stop()
	if h := a.srv.Health(); h.State != HealthDown || a.srv.Ready() == nil {
		t.Fatalf("after shutdown: %+v", h)
	}
}

// The commandCounter hook must see commands, or the test above proves nothing.
func TestCommandCounterCounts(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379", DialTimeout: time.Second})
	defer rdb.Close()
	c := &commandCounter{}
	rdb.AddHook(c)
	if err := rdb.Ping(context.Background()).Err(); err != nil {
		t.Skip("redis not reachable")
	}
	c.n.Store(0) // connecting sends commands of its own
	rdb.Get(context.Background(), "onair:test:nothing")
	if c.n.Load() != 1 {
		t.Fatalf("counted %d", c.n.Load())
	}
}
