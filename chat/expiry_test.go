package chat

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
	"github.com/redis/go-redis/v9"
)

// A room nobody is in is forgotten after RoomTTL (item 6): 3,000 rooms that had history
// leave no memory behind once everyone left and the TTL passed.
func TestIdleRoomsAreFreed(t *testing.T) {
	o := testOptions()
	o.RoomTTL = time.Second
	bus := NewMemoryBus(MemoryOptions{RoomTTL: o.RoomTTL})
	o.Bus = bus
	n := startNode(t, o)
	base := heapAfterGC()

	// 50 rooms with real viewers who post and leave, 2,950 with system messages only.
	// (Plain connections: the test client's buffers would dwarf what is measured.)
	for i := range 50 {
		h := http.Header{"X-Forwarded-For": {fmt.Sprintf("10.40.0.%d", i)}}
		conn, _, err := websocket.DefaultDialer.Dial(n.url+fmt.Sprintf("idle-%d?name=alice", i), h)
		if err != nil {
			t.Fatal(err)
		}
		conn.WriteJSON(map[string]any{"type": "send", "text": "a message that stays in history"})
		for {
			_, data, err := conn.ReadMessage()
			if err != nil {
				t.Fatal(err)
			}
			if strings.Contains(string(data), `"type":"msg"`) {
				break
			}
		}
		conn.Close()
	}
	for i := 50; i < 3000; i++ {
		if err := n.srv.Announce(fmt.Sprintf("idle-%d", i), SystemLive, "", ""); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "every viewer gone", func() bool {
		n.srv.mu.Lock()
		defer n.srv.mu.Unlock()
		return len(n.srv.rooms) == 0
	})
	if got := bus.Rooms(); got != 3000 {
		t.Fatalf("bus holds %d rooms before the TTL, want 3000", got)
	}
	// A room in use keeps its history past the TTL.
	keep, _ := join(t, n, "idle-7", "10.40.1.1", "bob")
	time.Sleep(1500 * time.Millisecond)
	waitFor(t, "idle rooms dropped", func() bool { return bus.Rooms() == 1 })
	keep.conn.Close()
	other := dial(t, n, "idle-8", "10.40.1.2", "")
	if h := other.next("welcome")["history"].([]any); len(h) != 0 {
		t.Fatalf("an expired room still has history: %v", h)
	}
	other.conn.Close()
	waitFor(t, "the last rooms dropped", func() bool { return bus.Rooms() == 0 })
	n.srv.sweep(timeNowPlus(2 * n.srv.ipRetention()))
	if grew := heapAfterGC() - base; grew > 512<<10 {
		t.Fatalf("heap grew by %d KiB after everyone left", grew>>10)
	}
}

// While a room is used its Redis keys live; once it is not, they expire (item 6).
func TestRedisRoomKeysExpire(t *testing.T) {
	o := testOptions()
	ba, err := NewRedisBus(context.Background(), testRedisURL, "expiry-"+t.Name(), nil,
		RedisOptions{PresenceTTL: 500 * time.Millisecond, RoomTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ba.Close() })
	if ba.Ready() != nil {
		t.Skip("redis not reachable")
	}
	o.Bus = ba
	n := startNode(t, o)
	room := uniqueRoom(t)
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"})
	defer rdb.Close()
	ctx := context.Background()
	keys := []string{keyOf(room, "seq"), keyOf(room, "epoch"), keyOf(room, "hist"), keyOf(room, "pres")}

	c, _ := join(t, n, room, "10.41.0.1", "alice")
	c.write(map[string]any{"type": "send", "text": "hello"})
	c.next("msg")
	// Held past three TTLs while in use: every key is there, with a TTL.
	for range 3 {
		time.Sleep(time.Second)
		for _, k := range keys {
			ttl, err := rdb.PTTL(ctx, k).Result()
			if err != nil || ttl <= 0 || ttl > time.Second {
				t.Fatalf("%s: ttl %v %v while the room is used", k, ttl, err)
			}
		}
	}
	c.conn.Close()
	waitFor(t, "room keys gone", func() bool {
		n, err := rdb.Exists(ctx, keys...).Result()
		return err == nil && n == 0
	})
}
