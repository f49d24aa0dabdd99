package rest

import (
	"encoding/json"
	"errors"
	"io"
	"math"
	"strings"
	"testing"

	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/dynamicpb"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	plugdbv1 "github.com/plugdb/plugdb/proto/plugdb/v1"
)

func marshal(t *testing.T, v any) string {
	t.Helper()
	b, err := Marshaler{}.Marshal(v)
	if err != nil {
		t.Fatalf("Marshal(%v): %v", v, err)
	}
	if !json.Valid(b) {
		t.Fatalf("Marshal(%v) is not valid JSON: %s", v, b)
	}
	return string(b)
}

func TestMarshalShapes(t *testing.T) {
	for _, tc := range []struct {
		name string
		msg  proto.Message
		want string
	}{
		{"utf8", &plugdbv1.KeyValue{Key: []byte("user:1"), Value: []byte("héllo 日本"), Lsn: 7},
			`{"key":"user:1","value":"héllo 日本","lsn":7}`},
		{"binary value", &plugdbv1.KeyValue{Key: []byte("user:1"), Value: []byte{0xff, 0x00}},
			`{"key":"user:1","value_base64":"/wA=","lsn":0}`},
		{"binary key", &plugdbv1.GetResponse{Key: []byte{0x80}, Value: []byte("v"), Lsn: 1},
			`{"key_base64":"gA==","value":"v","lsn":1}`},
		{"empty", &plugdbv1.KeyValue{}, `{"key":"","value":"","lsn":0}`},
		{"max uint64", &plugdbv1.WriteResponse{Lsn: math.MaxUint64, Partition: 3},
			`{"lsn":18446744073709551615,"partition":3}`},
		{"escapes", &plugdbv1.KeyValue{Key: []byte("a\"b\\c\n\t<&>\x01\u2028"), Lsn: 1},
			`{"key":"a\"b\\c\n\t<&>\u0001\u2028","value":"","lsn":1}`},
		{"repeated numbers", &plugdbv1.BatchResponse{Lsns: []uint64{1, 2, 1 << 60}},
			`{"lsns":[1,2,1152921504606846976]}`},
		{"empty repeated", &plugdbv1.BatchResponse{}, `{"lsns":[]}`},
		{"enums", &plugdbv1.BatchRequest{Ops: []*plugdbv1.BatchOp{
			{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte("a"), Value: []byte("1")},
			{Op: plugdbv1.BatchOp_OP_DELETE, Key: []byte("b")},
			{Op: plugdbv1.BatchOp_Op(42), Key: []byte("c")},
		}}, `{"ops":[{"op":"OP_PUT","key":"a","value":"1"},{"op":"OP_DELETE","key":"b","value":""},{"op":42,"key":"c","value":""}],"ack":"ACK_DEFAULT","request_id":null,"keyspace":""}`},
		{"status", &plugdbv1.StatusResponse{
			Cluster: "dev",
			Engine:  &plugdbv1.Plugin{Plugin: "rowfile", Mode: "plugin", Options: map[string]string{"sync": "batch", "a": "b"}},
			Partitions: []*plugdbv1.PartitionStatus{{Partition: 0, Epoch: 1, Replicas: []*plugdbv1.Replica{
				{Partition: 0, Addr: "127.0.0.1:7070", Role: "leader", Epoch: 1, AppliedLsn: 42, Keys: 10, Bytes: 4096}}}},
		}, `{"cluster":"dev","engine":{"plugin":"rowfile","mode":"plugin","options":{"a":"b","sync":"batch"}},"partitioner":null,"replicator":null,` +
			`"partitions":[{"partition":0,"epoch":1,"replicas":[{"partition":0,"addr":"127.0.0.1:7070","role":"leader","epoch":1,"applied_lsn":42,"keys":10,"bytes":4096,` +
			`"isr":false,"persisted_lsn":0,"lag_statements":0,"lag_ms":0,"replication_error":"","scans_served":0}],"ack":"","ack_fallback":false,"in_sync":0,"ack_needs":0,"replica_set":0}],"keyspaces":[],"layout_version":0,"reshard":null}`},
		{"rpc status", status.New(codes.NotFound, "not found: a").Proto(), `{"code":5,"error":"NOT_FOUND","message":"not found: a"}`},
		{"float", wrapperspb.Double(1.5), `{"value":1.5}`},
		{"nan", wrapperspb.Float(float32(math.NaN())), `{"value":"NaN"}`},
		{"int64", wrapperspb.Int64(-1 << 62), `{"value":-4611686018427387904}`},
		{"bool", wrapperspb.Bool(true), `{"value":true}`},
		{"oneof unset members skipped", structpb.NewNumberValue(2), `{"number_value":2}`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := marshal(t, tc.msg); got != tc.want {
				t.Errorf("Marshal:\n got %s\nwant %s", got, tc.want)
			}
		})
	}
}

// TestRoundTrip: every message written by Marshal reads back equal.
func TestRoundTrip(t *testing.T) {
	for _, msg := range []proto.Message{
		&plugdbv1.KeyValue{Key: []byte("user:1"), Value: []byte("héllo"), Lsn: 7},
		&plugdbv1.KeyValue{Key: []byte{0, 1, 2, 0xfe, 0xff}, Value: []byte{0xc3, 0x28}, Lsn: math.MaxUint64},
		&plugdbv1.ScanRequest{Start: []byte("a"), End: []byte{0xff}, Prefix: []byte("p/"), Limit: math.MinInt64},
		&plugdbv1.BatchRequest{Ops: []*plugdbv1.BatchOp{
			{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte("a"), Value: []byte{0xff}},
			{Op: plugdbv1.BatchOp_OP_DELETE, Key: []byte("b")},
		}},
		&plugdbv1.BatchResponse{Lsns: []uint64{0, 1, math.MaxUint64}},
		&plugdbv1.StatusResponse{
			Cluster:     "c",
			Engine:      &plugdbv1.Plugin{Plugin: "rowfile", Options: map[string]string{"sync": "batch", "x\ny": "\"q\""}},
			Partitioner: &plugdbv1.Plugin{Plugin: "hash"},
			Partitions: []*plugdbv1.PartitionStatus{{Partition: 1, Epoch: 2, Replicas: []*plugdbv1.Replica{
				{Partition: 1, Addr: "a", Role: "follower", Epoch: 2, AppliedLsn: 3, Keys: -4, Bytes: 5}}}},
		},
		wrapperspb.Double(math.Inf(-1)),
		wrapperspb.Float(0.1),
	} {
		b, err := Marshaler{}.Marshal(msg)
		if err != nil {
			t.Fatal(err)
		}
		got := msg.ProtoReflect().New().Interface()
		if err := (Marshaler{}).Unmarshal(b, got); err != nil {
			t.Fatalf("Unmarshal(%s): %v", b, err)
		}
		if !proto.Equal(got, msg) {
			t.Errorf("round trip of %s: got %v want %v", b, got, msg)
		}
	}
}

// testDynamic builds a message type with a repeated bytes field and a map of bytes, which
// plugdb.v1 does not have.
func testDynamic(t *testing.T) protoreflect.MessageDescriptor {
	t.Helper()
	fdp := &descriptorpb.FileDescriptorProto{
		Name:    proto.String("test.proto"),
		Package: proto.String("test"),
		Syntax:  proto.String("proto3"),
		MessageType: []*descriptorpb.DescriptorProto{{
			Name: proto.String("Blobs"),
			Field: []*descriptorpb.FieldDescriptorProto{
				{Name: proto.String("items"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
					Type: descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()},
				{Name: proto.String("named"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
					Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(".test.Blobs.NamedEntry")},
				{Name: proto.String("counts"), Number: proto.Int32(3), Label: descriptorpb.FieldDescriptorProto_LABEL_REPEATED.Enum(),
					Type: descriptorpb.FieldDescriptorProto_TYPE_MESSAGE.Enum(), TypeName: proto.String(".test.Blobs.CountsEntry")},
			},
			NestedType: []*descriptorpb.DescriptorProto{
				{Name: proto.String("NamedEntry"), Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
					Field: []*descriptorpb.FieldDescriptorProto{
						{Name: proto.String("key"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_STRING.Enum()},
						{Name: proto.String("value"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_BYTES.Enum()},
					}},
				{Name: proto.String("CountsEntry"), Options: &descriptorpb.MessageOptions{MapEntry: proto.Bool(true)},
					Field: []*descriptorpb.FieldDescriptorProto{
						{Name: proto.String("key"), Number: proto.Int32(1), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_INT64.Enum()},
						{Name: proto.String("value"), Number: proto.Int32(2), Label: descriptorpb.FieldDescriptorProto_LABEL_OPTIONAL.Enum(), Type: descriptorpb.FieldDescriptorProto_TYPE_UINT64.Enum()},
					}},
			},
		}},
	}
	fd, err := protodesc.NewFile(fdp, protoregistry.GlobalFiles)
	if err != nil {
		t.Fatal(err)
	}
	return fd.Messages().Get(0)
}

func TestRepeatedAndMapBytes(t *testing.T) {
	md := testDynamic(t)
	for _, tc := range []struct{ in, out string }{
		{`{"items":["a","b"],"named":{"x":"1"},"counts":{"-5":18446744073709551615}}`,
			`{"items":["a","b"],"named":{"x":"1"},"counts":{"-5":18446744073709551615}}`},
		// One element that is not UTF-8 puts the whole field in base64.
		{`{"items_base64":["YQ==","/w=="],"named_base64":{"x":"MQ==","y":"/w=="},"counts":{}}`,
			`{"items_base64":["YQ==","/w=="],"named_base64":{"x":"MQ==","y":"/w=="},"counts":{}}`},
		{`{"items":[],"named":{}}`, `{"items":[],"named":{},"counts":{}}`},
	} {
		m := dynamicpb.NewMessage(md)
		if err := (Marshaler{}).Unmarshal([]byte(tc.in), m); err != nil {
			t.Fatalf("Unmarshal(%s): %v", tc.in, err)
		}
		if got := marshal(t, m); got != tc.out {
			t.Errorf("Marshal(Unmarshal(%s)):\n got %s\nwant %s", tc.in, got, tc.out)
		}
	}
	m := dynamicpb.NewMessage(md)
	err := (Marshaler{}).Unmarshal([]byte(`{"counts":{"x":1}}`), m)
	if err == nil || !strings.Contains(err.Error(), `field "counts[\"x\"]": expected an integer`) {
		t.Errorf("bad map key: %v", err)
	}
	err = (Marshaler{}).Unmarshal([]byte(`{"named":{"x":"1","x":"2"}}`), m)
	if err == nil || !strings.Contains(err.Error(), "key given twice") {
		t.Errorf("duplicate map key: %v", err)
	}
}

func TestUnmarshalInputs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		msg  proto.Message
		want proto.Message
	}{
		{`{"key":"user:1","value":"x y"}`, &plugdbv1.PutRequest{}, &plugdbv1.PutRequest{Key: []byte("user:1"), Value: []byte("x y")}},
		{`{"key":"k","value_base64":"/wA="}`, &plugdbv1.PutRequest{}, &plugdbv1.PutRequest{Key: []byte("k"), Value: []byte{0xff, 0}}},
		{`{"key_base64":"_wA","value_base64":"/wA"}`, &plugdbv1.PutRequest{}, &plugdbv1.PutRequest{Key: []byte{0xff, 0}, Value: []byte{0xff, 0}}},
		{`{"value":"\u00e9\ud83d\ude00"}`, &plugdbv1.PutRequest{}, &plugdbv1.PutRequest{Value: []byte("é😀")}},
		{`{"value":null,"key":"k"}`, &plugdbv1.PutRequest{}, &plugdbv1.PutRequest{Key: []byte("k")}},
		{`{}`, &plugdbv1.PutRequest{}, &plugdbv1.PutRequest{}},
		{`null`, &plugdbv1.PutRequest{}, &plugdbv1.PutRequest{}},
		{` {"limit": 10} `, &plugdbv1.ScanRequest{}, &plugdbv1.ScanRequest{Limit: 10}},
		{`{"limit":"-10"}`, &plugdbv1.ScanRequest{}, &plugdbv1.ScanRequest{Limit: -10}},
		{`{"lsns":[18446744073709551615,"7"]}`, &plugdbv1.BatchResponse{}, &plugdbv1.BatchResponse{Lsns: []uint64{math.MaxUint64, 7}}},
		{`{"ops":[{"op":"put","key":"a","value":"1"},{"op":"PUT","key":"b"},{"op":"OP_DELETE","key":"c"},{"op":"Delete","key":"d"},{"op":2,"key":"e"},{"op":"op_put"}]}`,
			&plugdbv1.BatchRequest{}, &plugdbv1.BatchRequest{Ops: []*plugdbv1.BatchOp{
				{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte("a"), Value: []byte("1")},
				{Op: plugdbv1.BatchOp_OP_PUT, Key: []byte("b")},
				{Op: plugdbv1.BatchOp_OP_DELETE, Key: []byte("c")},
				{Op: plugdbv1.BatchOp_OP_DELETE, Key: []byte("d")},
				{Op: plugdbv1.BatchOp_OP_DELETE, Key: []byte("e")},
				{Op: plugdbv1.BatchOp_OP_PUT},
			}}},
		{`{"engine":{"options":{"a":"1"}},"partitions":[{"replicas":[{"applied_lsn":9,"keys":-1}]}]}`, &plugdbv1.StatusResponse{},
			&plugdbv1.StatusResponse{Engine: &plugdbv1.Plugin{Options: map[string]string{"a": "1"}},
				Partitions: []*plugdbv1.PartitionStatus{{Replicas: []*plugdbv1.Replica{{AppliedLsn: 9, Keys: -1}}}}}},
		{`{"value":"Infinity"}`, &wrapperspb.DoubleValue{}, wrapperspb.Double(math.Inf(1))},
		{`{"value":1e3}`, &wrapperspb.DoubleValue{}, wrapperspb.Double(1000)},
	} {
		if err := (Marshaler{}).Unmarshal([]byte(tc.in), tc.msg); err != nil {
			t.Errorf("Unmarshal(%s): %v", tc.in, err)
			continue
		}
		if !proto.Equal(tc.msg, tc.want) {
			t.Errorf("Unmarshal(%s) = %v, want %v", tc.in, tc.msg, tc.want)
		}
	}
}

func TestUnmarshalErrors(t *testing.T) {
	for _, tc := range []struct {
		in   string
		msg  proto.Message
		want []string // substrings of the error
	}{
		{`{"valu":"x"}`, &plugdbv1.PutRequest{}, []string{`unknown field "valu"`, "plugdb.v1.PutRequest", "allowed: key, key_base64, value, value_base64", "offset 7"}},
		{`{"ops":[{"op":"put","kee":"x"}]}`, &plugdbv1.BatchRequest{}, []string{`unknown field "ops[0].kee"`, "plugdb.v1.BatchOp", "allowed: op, key, key_base64, value, value_base64"}},
		{`{"value":"x","value_base64":"eA=="}`, &plugdbv1.PutRequest{}, []string{`"value" and "value_base64" both given`}},
		{`{"value":"x","value":"y"}`, &plugdbv1.PutRequest{}, []string{`field "value": given twice`}},
		{`{"value_base64":"%%%"}`, &plugdbv1.PutRequest{}, []string{`field "value_base64": invalid base64`}},
		{`{"value":1}`, &plugdbv1.PutRequest{}, []string{`field "value": expected a string (UTF-8 text; or value_base64 with base64), got number 1`}},
		{`{"lsn_base64":"AA=="}`, &plugdbv1.KeyValue{}, []string{`unknown field "lsn_base64"`}},
		{`{"limit":1.5}`, &plugdbv1.ScanRequest{}, []string{`field "limit": expected an integer`, `"1.5"`}},
		{`{"limit":"ten"}`, &plugdbv1.ScanRequest{}, []string{`field "limit": expected an integer`}},
		{`{"limit":true}`, &plugdbv1.ScanRequest{}, []string{`field "limit": expected an integer, got boolean true`}},
		{`{"lsn":-1}`, &plugdbv1.KeyValue{}, []string{`field "lsn": expected an integer from 0 to 18446744073709551615`}},
		{`{"partition":4294967296}`, &plugdbv1.WriteResponse{}, []string{`field "partition": expected an integer from 0 to 4294967295`}},
		{`{"ops":[{"op":"upsert"}]}`, &plugdbv1.BatchRequest{}, []string{`field "ops[0].op": invalid Op string "upsert"`, `"unspecified", "put", "delete"`, "OP_ prefix"}},
		{`{"ops":{}}`, &plugdbv1.BatchRequest{}, []string{`field "ops": expected an array, got an object`}},
		{`[]`, &plugdbv1.BatchRequest{}, []string{`expected a JSON object for plugdb.v1.BatchRequest, got an array`}},
		{`{"engine":"x"}`, &plugdbv1.StatusResponse{}, []string{`field "engine": expected a JSON object for plugdb.v1.Plugin, got string "x"`}},
		{`{"value":"x",}`, &plugdbv1.PutRequest{}, []string{"malformed JSON at offset 13", "invalid character '}'"}},
		{`{"value":"x"`, &plugdbv1.PutRequest{}, []string{"malformed JSON: unexpected end of input at offset 12"}},
		{`{"value" "x"}`, &plugdbv1.PutRequest{}, []string{"malformed JSON at offset 9", "after object key"}},
		{`{"value":"x"} {}`, &plugdbv1.PutRequest{}, []string{"malformed JSON: unexpected", "after the JSON value"}},
		{``, &plugdbv1.PutRequest{}, []string{"malformed JSON: empty input"}},
	} {
		err := (Marshaler{}).Unmarshal([]byte(tc.in), tc.msg)
		if err == nil {
			t.Errorf("Unmarshal(%s): no error", tc.in)
			continue
		}
		for _, w := range tc.want {
			if !strings.Contains(err.Error(), w) {
				t.Errorf("Unmarshal(%s) = %q, want it to contain %q", tc.in, err, w)
			}
		}
	}
}

// TestGatewayEnvelopes: grpc-gateway's stream chunks are unwrapped.
func TestGatewayEnvelopes(t *testing.T) {
	kv := &plugdbv1.KeyValue{Key: []byte("a"), Value: []byte("1"), Lsn: 3}
	if got, want := marshal(t, map[string]any{"result": kv}), `{"key":"a","value":"1","lsn":3}`; got != want {
		t.Errorf("result chunk: got %s want %s", got, want)
	}
	st := status.New(codes.Unavailable, "partition 1 not ready").Proto()
	if got, want := marshal(t, map[string]proto.Message{"error": st}), `{"code":14,"error":"UNAVAILABLE","message":"partition 1 not ready"}`; got != want {
		t.Errorf("error chunk: got %s want %s", got, want)
	}
	// Anything else goes through encoding/json.
	if got, want := marshal(t, map[string]any{"a": 1, "b": "x"}), `{"a":1,"b":"x"}`; got != want {
		t.Errorf("plain map: got %s want %s", got, want)
	}
	var m map[string]any
	if err := (Marshaler{}).Unmarshal([]byte(`{"a":1}`), &m); err != nil || m["a"] == nil {
		t.Errorf("plain Unmarshal: %v %v", m, err)
	}
	if got := (Marshaler{}).ContentType(kv); got != "application/json" {
		t.Errorf("ContentType %q", got)
	}
	if got := (Marshaler{}).StreamContentType(kv); got != "application/x-ndjson" {
		t.Errorf("StreamContentType %q", got)
	}
	if got := string(Marshaler{}.Delimiter()); got != "\n" {
		t.Errorf("Delimiter %q", got)
	}
}

// TestStreamDecoder: the decoder reads a Scan response (NDJSON) line by line, and turns
// an error line into a status error.
func TestStreamDecoder(t *testing.T) {
	var sb strings.Builder
	enc := Marshaler{}.NewEncoder(&sb)
	want := []*plugdbv1.KeyValue{
		{Key: []byte("a"), Value: []byte("1"), Lsn: 1},
		{Key: []byte("b"), Value: []byte{0xff}, Lsn: 2},
	}
	for _, kv := range want {
		if err := enc.Encode(kv); err != nil {
			t.Fatal(err)
		}
	}
	if err := enc.Encode(&spb.Status{Code: int32(codes.Unavailable), Message: "later"}); err != nil {
		t.Fatal(err)
	}
	if got := sb.String(); got != "{\"key\":\"a\",\"value\":\"1\",\"lsn\":1}\n{\"key\":\"b\",\"value_base64\":\"/w==\",\"lsn\":2}\n{\"code\":14,\"error\":\"UNAVAILABLE\",\"message\":\"later\"}\n" {
		t.Fatalf("encoded stream:\n%s", got)
	}
	dec := Marshaler{}.NewDecoder(strings.NewReader(sb.String()))
	for _, w := range want {
		var kv plugdbv1.KeyValue
		if err := dec.Decode(&kv); err != nil {
			t.Fatal(err)
		}
		if !proto.Equal(&kv, w) {
			t.Errorf("got %v want %v", &kv, w)
		}
	}
	var kv plugdbv1.KeyValue
	err := dec.Decode(&kv)
	if status.Code(err) != codes.Unavailable || status.Convert(err).Message() != "later" {
		t.Errorf("error line: got %v", err)
	}
	if err := dec.Decode(&kv); !errors.Is(err, io.EOF) {
		t.Errorf("end: got %v, want io.EOF", err)
	}
	// The offsets of errors are offsets in the whole stream.
	dec = Marshaler{}.NewDecoder(strings.NewReader("{\"key\":\"a\"}\n{\"kee\":\"b\"}\n"))
	if err := dec.Decode(&kv); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&kv); err == nil || !strings.Contains(err.Error(), "offset 18") {
		t.Errorf("second line: got %v, want an error at offset 18", err)
	}
	dec = Marshaler{}.NewDecoder(strings.NewReader("{\"key\":\"a\"}\n{\"key\" \"b\"}\n"))
	if err := dec.Decode(&kv); err != nil {
		t.Fatal(err)
	}
	if err := dec.Decode(&kv); err == nil || !strings.Contains(err.Error(), "malformed JSON at offset 19") {
		t.Errorf("second line: got %v, want malformed JSON at offset 19", err)
	}
	// Empty input: io.EOF, as the gateway expects of an empty body.
	if err := (Marshaler{}).NewDecoder(strings.NewReader(" \n")).Decode(&kv); !errors.Is(err, io.EOF) {
		t.Errorf("empty input: got %v, want io.EOF", err)
	}
}

func TestEnumPrefix(t *testing.T) {
	ed := plugdbv1.BatchOp_OP_PUT.Descriptor()
	if got := enumPrefix(ed); got != "OP_" {
		t.Errorf("enumPrefix(Op) = %q", got)
	}
	if got := CodeName(codes.Canceled); got != "CANCELLED" {
		t.Errorf("CodeName(Canceled) = %q", got)
	}
	if got := CodeName(codes.Code(99)); got != "CODE_99" {
		t.Errorf("CodeName(99) = %q", got)
	}
}
