package headless

import (
	"fmt"
	"image/color"
	"image/png"
	"os"
)

// Ink reads the PNG at path and returns the share of its pixels that are not
// near white, and for each of colors the number of pixels near it: enough to
// tell a rendered chart from a blank page.
func Ink(path string, colors ...color.RGBA) (inked float64, counts []int, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, nil, err
	}
	defer f.Close()
	img, err := png.Decode(f)
	if err != nil {
		return 0, nil, fmt.Errorf("decode %s: %w", path, err)
	}
	counts = make([]int, len(colors))
	var ink, total int
	b := img.Bounds()
	for y := b.Min.Y; y < b.Max.Y; y++ {
		for x := b.Min.X; x < b.Max.X; x++ {
			c := color.RGBAModel.Convert(img.At(x, y)).(color.RGBA)
			total++
			if c.R < 240 || c.G < 240 || c.B < 240 {
				ink++
			}
			for i, want := range colors {
				if dist(c.R, want.R)+dist(c.G, want.G)+dist(c.B, want.B) < 24 {
					counts[i]++
				}
			}
		}
	}
	if total == 0 {
		return 0, counts, fmt.Errorf("%s: empty image", path)
	}
	return float64(ink) / float64(total), counts, nil
}

func dist(a, b uint8) int {
	if a > b {
		return int(a - b)
	}
	return int(b - a)
}
