// Package chat serves onair's chat rooms: one room per channel at /chat/{channel}, over
// WebSocket with JSON messages (the protocol is docs/chat-protocol.md).
//
// A Server is an http.Handler. Rooms exist on a node while it has viewers in them. A Bus
// carries room events between nodes and keeps what they share (sequence, history,
// restrictions, presence): MemoryBus inside one process, RedisBus across any number of nodes
// sharing one Redis.
//
// Wiring, in outline:
//
//	bus, err := chat.NewRedisBus(ctx, redisURL, nodeID, logger, chat.RedisOptions{}) // or omit Bus for memory
//	redis.SetLogger(chat.QuietRedisLogger{}) // RedisBus logs outages once itself
//	opts := chat.DefaultOptions()
//	opts.Secret, opts.Bus, opts.Logger = secret, bus, logger
//	opts.Known = func(channel string) bool { ... }  // rooms only for real channels
//	opts.TrustedProxies = proxies                    // whose X-Forwarded-For to believe
//	srv, err := chat.NewServer(opts)                 // refuses nonsense limits
//	mux.Handle("/chat/", srv)
//	...
//	srv.Announce("demo", chat.SystemLive, "", "")
//	srv.Shutdown(ctx) // close frames to every client
//	bus.Close()
//
// Delivery: each room event is encoded once into a WebSocket frame shared by all viewers of
// the node. The room's fan-out writes it straight to each socket when the socket buffer takes
// it (no goroutine switch, no copy), and otherwise leaves the rest to that connection's writer
// goroutine through a byte-counted queue; a connection whose queue overflows is closed with
// 1008, so one slow reader never delays the others. A busy room coalesces events that arrive
// within Options.FrameInterval into one frame.
//
// Hostile input: everything that can refuse a connection (address budget, unknown channel,
// origin, a token in the URL) is decided before the WebSocket upgrade, so a refusal costs no
// room or bus state; a room nobody is in is forgotten after Options.RoomTTL; a panic in a
// connection's or room's goroutine is recovered, logged and counted, and the room goes on.
//
// Order: with Redis, a Lua script assigns each kept event the room's next sequence number,
// appends it to the capped history and publishes it in one atomic step, so every node receives
// events in sequence order; a node that sees a gap (after a reconnect) fills it from history.
package chat
