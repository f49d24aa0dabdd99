package api

import (
	"fmt"
	"strconv"
	"time"

	"google.golang.org/genproto/googleapis/rpc/errdetails"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"
)

// LayoutHeader is the gRPC metadata key with which the router sends a node
// the layout version a scan was placed under; a node on another layout
// refuses the scan with a *MovingError (To -1).
const LayoutHeader = "plugdb-layout"

// ReasonMoving is the ErrorInfo reason of a MovingError on the wire; its
// metadata holds "partition" (the node's), "to" (the key's next partition)
// and "addr".
const ReasonMoving = "MOVING"

// MovingError says a key is moving to another partition in a reshard and is
// fenced for the short moment its last changes are copied: nothing was read
// or written; the request may be sent again (the router does, until its
// deadline), and after the move it goes to the key's new partition.
type MovingError struct {
	// Key is the first refused key.
	Key []byte
	// Partition and Addr name the node that refused it; To is the key's
	// partition after the move (-1: several keys, a scan's).
	Partition, To int
	Addr          string
}

func (e *MovingError) Error() string {
	if e.To < 0 {
		return fmt.Sprintf("keys of partition %d are moving to other partitions in a reshard (node %s): retry in a moment", e.Partition, e.Addr)
	}
	return fmt.Sprintf("key %q is moving from partition %d to partition %d in a reshard (node %s): retry in a moment",
		e.Key, e.Partition, e.To, e.Addr)
}

// Moving reports whether err (from a node, over gRPC) says the key is
// fenced by a reshard.
func Moving(err error) bool { return hasReason(err, ReasonMoving) }

// movingStatus is Unavailable with ErrorInfo MOVING and a short RetryInfo.
func movingStatus(e *MovingError, msg string) error {
	st := status.New(codes.Unavailable, msg)
	info := &errdetails.ErrorInfo{Reason: ReasonMoving, Domain: "plugdb", Metadata: map[string]string{
		"partition": strconv.Itoa(e.Partition), "to": strconv.Itoa(e.To), "addr": e.Addr}}
	if d, err := st.WithDetails(info, &errdetails.RetryInfo{RetryDelay: durationpb.New(50 * time.Millisecond)}); err == nil {
		st = d
	}
	return st.Err()
}

// ToStatus maps an error of a node's own services (plugdb.node.v1) to the
// status the public API would give it.
func ToStatus(err error) error { return toStatus(err, nil) }
