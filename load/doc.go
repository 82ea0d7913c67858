// Package load is onair's load tool: RTMP publishers that replay an FLV
// recording at its real rate, and a watcher that polls HLS playlists for
// stalls. `onair load publish` and `onair load watch` drive it; the
// ceiling benchmark (bench/ceiling) uses it as a library.
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
package load
