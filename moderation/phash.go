package moderation

import (
	"fmt"
	"image"
	_ "image/gif" // HashImageFile accepts GIF
	_ "image/jpeg"
	_ "image/png"
	"math"
	"math/bits"
	"os"
	"sort"
)

// hashSize is the side of the grayscale image the DCT runs on; the hash keeps
// the 8×8 lowest frequencies, which survive scaling, re-encoding and mild
// colour changes while fine detail does not.
const hashSize = 32

// dctCos[u][x] = cos((2x+1)uπ / 2N) for the 8 frequencies the hash keeps.
var dctCos = func() (t [8][hashSize]float64) {
	for u := 0; u < 8; u++ {
		for x := 0; x < hashSize; x++ {
			t[u][x] = math.Cos(float64(2*x+1) * float64(u) * math.Pi / (2 * hashSize))
		}
	}
	return t
}()

// HashImage returns the 64-bit perceptual hash (pHash) of img: the image is
// reduced to 32×32 luma by area averaging, transformed with a 2-D DCT, and
// each of the 8×8 lowest-frequency coefficients becomes one bit, set when it
// is above the median of the 63 non-DC ones. Similar images have hashes a
// small Hamming distance apart.
func HashImage(img image.Image) uint64 {
	var px [hashSize][hashSize]float64
	var cnt [hashSize][hashSize]float64
	b := img.Bounds()
	w, h := b.Dx(), b.Dy()
	if w == 0 || h == 0 {
		return 0
	}
	for y := b.Min.Y; y < b.Max.Y; y++ {
		cy := (y - b.Min.Y) * hashSize / h
		for x := b.Min.X; x < b.Max.X; x++ {
			cx := (x - b.Min.X) * hashSize / w
			px[cy][cx] += luma(img, x, y)
			cnt[cy][cx]++
		}
	}
	for y := range px {
		for x := range px[y] {
			if cnt[y][x] > 0 {
				px[y][x] /= cnt[y][x]
			}
		}
	}
	// Separable DCT, keeping only the 8 lowest frequencies in each direction.
	var rows [hashSize][8]float64
	for y := 0; y < hashSize; y++ {
		for u := 0; u < 8; u++ {
			var s float64
			for x := 0; x < hashSize; x++ {
				s += px[y][x] * dctCos[u][x]
			}
			rows[y][u] = s
		}
	}
	var coef [64]float64
	for v := 0; v < 8; v++ {
		for u := 0; u < 8; u++ {
			var s float64
			for y := 0; y < hashSize; y++ {
				s += rows[y][u] * dctCos[v][y]
			}
			coef[v*8+u] = s
		}
	}
	ac := make([]float64, 63)
	copy(ac, coef[1:])
	sort.Float64s(ac)
	median := (ac[31] + ac[30]) / 2
	var hash uint64
	for i, c := range coef {
		if c > median {
			hash |= 1 << (63 - i)
		}
	}
	return hash
}

// luma returns the Rec. 601 luma of one pixel, 0–255, with fast paths for
// the decoder's output (YCbCr) and common formats.
func luma(img image.Image, x, y int) float64 {
	switch m := img.(type) {
	case *image.YCbCr:
		return float64(m.Y[m.YOffset(x, y)])
	case *image.Gray:
		return float64(m.Pix[m.PixOffset(x, y)])
	}
	r, g, bl, _ := img.At(x, y).RGBA()
	return (0.299*float64(r) + 0.587*float64(g) + 0.114*float64(bl)) / 257
}

// HashImageFile returns the perceptual hash of a JPEG, PNG or GIF file, for
// adding to a blocklist.
func HashImageFile(path string) (uint64, error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, fmt.Errorf("hashing image: %w", err)
	}
	defer f.Close()
	img, _, err := image.Decode(f)
	if err != nil {
		return 0, fmt.Errorf("hashing image %s: %w", path, err)
	}
	return HashImage(img), nil
}

// Distance is the Hamming distance between two hashes.
func Distance(a, b uint64) int { return bits.OnesCount64(a ^ b) }
