package zkserver

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"strings"
	"time"
)

// fourLetterTimeout bounds one four-letter-word exchange when ctx has no
// earlier deadline.
const fourLetterTimeout = 2 * time.Second

// FourLetter sends a ZooKeeper four-letter word (such as "ruok" or "srvr") to
// addr and returns the whole answer. The server must whitelist the word.
func FourLetter(ctx context.Context, addr, word string) (string, error) {
	return fourLetter(ctx, nil, addr, word)
}

// DialFunc connects to a server's client address (network "tcp").
type DialFunc func(ctx context.Context, network, addr string) (net.Conn, error)

// fourLetter is FourLetter through dial; nil dials directly.
func fourLetter(ctx context.Context, dial DialFunc, addr, word string) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, fourLetterTimeout)
	defer cancel()
	if dial == nil {
		var d net.Dialer
		dial = d.DialContext
	}
	c, err := dial(ctx, "tcp", addr)
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", word, addr, err)
	}
	defer c.Close()
	if dl, ok := ctx.Deadline(); ok {
		if err := c.SetDeadline(dl); err != nil {
			return "", fmt.Errorf("%s %s: %w", word, addr, err)
		}
	}
	if _, err := io.WriteString(c, word); err != nil {
		return "", fmt.Errorf("%s %s: %w", word, addr, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 1<<20))
	if err != nil {
		return "", fmt.Errorf("%s %s: %w", word, addr, err)
	}
	return string(b), nil
}

// Ruok asks the server at addr "ruok" and returns nil when it answers "imok".
func Ruok(ctx context.Context, addr string) error { return ruok(ctx, nil, addr) }

func ruok(ctx context.Context, dial DialFunc, addr string) error {
	ans, err := fourLetter(ctx, dial, addr, "ruok")
	if err != nil {
		return err
	}
	if ans != "imok" {
		return fmt.Errorf("ruok %s: answer %q, want \"imok\"", addr, ans)
	}
	return nil
}

// Mode asks the server at addr "srvr" and returns its mode: "standalone",
// "leader", "follower" or "observer". It is an error when the server is not
// serving requests (such as an ensemble member without a quorum).
func Mode(ctx context.Context, addr string) (string, error) { return mode(ctx, nil, addr) }

func mode(ctx context.Context, dial DialFunc, addr string) (string, error) {
	ans, err := fourLetter(ctx, dial, addr, "srvr")
	if err != nil {
		return "", err
	}
	sc := bufio.NewScanner(strings.NewReader(ans))
	for sc.Scan() {
		if m, ok := strings.CutPrefix(sc.Text(), "Mode: "); ok {
			return strings.TrimSpace(m), nil
		}
	}
	return "", fmt.Errorf("srvr %s: no mode in answer %q", addr, strings.TrimSpace(ans))
}
