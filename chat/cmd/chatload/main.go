// Command chatload benchmarks onair chat with real WebSocket clients on loopback.
//
//	chatload run -viewers 5000 -rate 40 -duration 15s [-redis redis://127.0.0.1:6379/0 -nodes 2]
//
// "run" starts the chat server(s) as child processes ("chatload serve"), connects the viewers
// and 10 senders, sends about 64-byte messages at -rate messages/s in total, and reports
// deliveries/s, send-to-receive latency, server CPU and memory per connection.
// It only ever connects to 127.0.0.1.
package main

import (
	"context"
	"fmt"
	"os"
	"syscall"
)

// benchSecret signs the senders' moderator tokens; parent and child nodes share it.
const benchSecret = "chatload-bench-secret"

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: chatload run|serve [flags]")
		os.Exit(2)
	}
	raiseNoFile()
	var err error
	switch os.Args[1] {
	case "run":
		err = runBench(context.Background(), os.Args[2:])
	case "serve":
		err = serve(os.Args[2:])
	default:
		err = fmt.Errorf("unknown command %q", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "chatload:", err)
		os.Exit(1)
	}
}

// raiseNoFile lifts the open-file limit to its hard maximum: thousands of sockets are needed.
func raiseNoFile() {
	var l syscall.Rlimit
	if syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l) == nil && l.Cur < l.Max {
		l.Cur = l.Max
		syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l)
	}
}
