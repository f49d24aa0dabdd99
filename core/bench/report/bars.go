package report

import (
	"fmt"
	"strings"

	"golang.org/x/net/html"
)

// Bars counts the bars of each chart in an HTML document: the report as
// WriteHTML wrote it, or the DOM a browser built from it. A chart is counted
// (with 0 bars if need be) only where its <figure data-chart=…> holds an <svg>.
func Bars(doc string) (map[string]int, error) {
	root, err := html.Parse(strings.NewReader(doc))
	if err != nil {
		return nil, fmt.Errorf("parse report: %w", err)
	}
	count, withSVG := map[string]int{}, map[string]bool{}
	var walk func(n *html.Node, chart string)
	walk = func(n *html.Node, chart string) {
		if n.Type == html.ElementNode {
			switch {
			case n.Data == "figure" && attr(n, "data-chart") != "":
				chart = attr(n, "data-chart")
			case n.Data == "svg" && chart != "":
				withSVG[chart] = true
			case n.Data == "rect" && attr(n, "class") == "bar" && chart != "":
				count[chart]++
			}
		}
		for c := n.FirstChild; c != nil; c = c.NextSibling {
			walk(c, chart)
		}
	}
	walk(root, "")
	out := map[string]int{}
	for chart := range withSVG {
		out[chart] = count[chart]
	}
	return out, nil
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}
