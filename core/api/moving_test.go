package api

import (
	"fmt"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestMovingErrorTravelsAsRetryableUnavailable(t *testing.T) {
	err := toStatus(fmt.Errorf("partition 1: %w", &MovingError{Key: []byte("k"), Partition: 1, To: 2, Addr: "127.0.0.1:1"}), []byte("k"))
	if status.Code(err) != codes.Unavailable || !Moving(err) || NotLeader(err) {
		t.Fatalf("status %v: code %v, Moving %v", err, status.Code(err), Moving(err))
	}
	if !strings.Contains(status.Convert(err).Message(), `key "k" is moving from partition 1 to partition 2 in a reshard`) {
		t.Fatalf("message %q", status.Convert(err).Message())
	}
}
