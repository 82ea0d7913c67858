// Command examplehook is a minimal onair moderation webhook: it checks the
// request signature and its time, decodes the frame, and blocks frames that are mostly
// one colour (a stand-in for a real classifier).
//
//	go run ./moderation/examplehook -addr :9000 -secret "$SECRET"
//	onair serve --moderation-webhook http://127.0.0.1:9000/ --moderation-secret "$SECRET"
package main

import (
	"bytes"
	"encoding/json"
	"flag"
	"image"
	_ "image/jpeg"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/onairhq/onair/moderation"
)

func main() {
	addr := flag.String("addr", ":9000", "listen address")
	secret := flag.String("secret", "", "shared secret (onair's --moderation-secret)")
	flag.Parse()
	http.HandleFunc("POST /", func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(io.LimitReader(r.Body, 32<<20))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		// Verify the signed time and body before parsing anything: a request
		// older than five minutes is a replay.
		if err := moderation.VerifyTimedSignature([]byte(*secret), body,
			r.Header.Get(moderation.TimedSignatureHeader), time.Now(), moderation.ReplayWindow); err != nil {
			http.Error(w, "bad signature: "+err.Error(), http.StatusUnauthorized)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		if err := r.ParseMultipartForm(32 << 20); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		f, _, err := r.FormFile("frame")
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		img, _, err := image.Decode(f)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		answer := map[string]any{"action": "allow"}
		if share := dominantShare(img); share > 0.9 {
			answer = map[string]any{"action": "block", "reason": "mostly one colour", "ban_seconds": 600}
		}
		log.Printf("channel=%s broadcast=%s t=%s -> %v", r.FormValue("channel"), r.FormValue("broadcast_id"), r.FormValue("frame_time"), answer["action"])
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(answer)
	})
	log.Fatal(http.ListenAndServe(*addr, nil))
}

// dominantShare is the fraction of pixels near the most common coarse colour.
func dominantShare(img image.Image) float64 {
	counts := map[[3]uint32]int{}
	b := img.Bounds()
	n := 0
	for y := b.Min.Y; y < b.Max.Y; y += 2 {
		for x := b.Min.X; x < b.Max.X; x += 2 {
			r, g, bl, _ := img.At(x, y).RGBA()
			counts[[3]uint32{r >> 13, g >> 13, bl >> 13}]++
			n++
		}
	}
	best := 0
	for _, c := range counts {
		best = max(best, c)
	}
	return float64(best) / float64(max(n, 1))
}
