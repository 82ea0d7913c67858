// Package load is onair's load tool: RTMP publishers that replay an FLV
// recording at its real rate, a watcher that polls HLS playlists for
// stalls, simulated players of one stream, and a burst of abandoned
// blocking requests. `onair load publish|watch|play|abandon` drive it; the
// benchmarks (bench/ceiling, bench/viewers) use it as a library.
//
// Publishing is built to cost little per publisher, so that hundreds run
// beside the server under test on one machine:
//   - the recording is read once and every message chunked once
//     (PrepareMedia); per publisher and loop only a 12-byte chunk header
//     differs, written beside the shared bytes with writev;
//   - a few scheduler goroutines (one per CPU) pace all publishers from a
//     ticker, writing each publisher's due messages with non-blocking
//     writes, so a server that stops reading holds up only its own
//     connection, which then shows as late;
//   - each connection has one goroutine: it dials, publishes, and then
//     drains the server's acknowledgements and status messages.
//
// A publisher is late when its oldest message not yet written is more
// than PublishOptions.LateAfter behind its schedule because the server did
// not take the bytes: the delay of the scheduler's own tick is left out of
// it and reported apart (Result.SchedulerLag), so an overloaded load tool
// is not mistaken for a slow server. After such a delay a publisher
// catches up at once, writing what came due in batches.
//
// The watcher relies only on what playlists say: it reads a multivariant
// playlist once and polls its first variant's media playlist, going back
// to the multivariant one after a failure (names may change), as a player
// does; a playlist is fresh while its newest segment or part (media
// sequence, segment count, parts after the last segment) keeps advancing
// within StallAfter target durations.
//
// A player (StartPlay) follows an LL-HLS playlist as hls.js does in
// low-latency mode: the multivariant playlist once, then blocking reloads
// (_HLS_msn, _HLS_part, and _HLS_skip when offered) for the part after the
// newest listed, fetching every part newly listed; a plain playlist it
// reloads every half target duration, fetching every new segment. Each
// player is one goroutine with one kept-alive connection; playlists are
// asked for gzipped and counted as sent. Figures cover a window after the
// ramp, so that they describe the steady state.
//
// Abandon sends blocking reloads for the segment after the one in
// progress of a stalled stream, each cancelled a short random time after
// it went out, and follows the server's go_goroutines and
// go_memstats_heap_alloc_bytes until they are back at their baseline.
package load
