package rest

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/grpc-ecosystem/grpc-gateway/v2/runtime"
	codepb "google.golang.org/genproto/googleapis/rpc/code"
	spb "google.golang.org/genproto/googleapis/rpc/status"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
)

// MIME types of the REST API.
const (
	// MIMEJSON is the Content-Type of every response but Scan's.
	MIMEJSON = "application/json"
	// MIMENDJSON is the Content-Type of a Scan response: one JSON object per line.
	MIMENDJSON = "application/x-ndjson"
)

// Base64Suffix is appended to the name of a bytes field to carry its value in standard
// base64 instead of UTF-8 text (`value_base64`).
const Base64Suffix = "_base64"

// Marshaler is the JSON codec of the REST API, a runtime.Marshaler for grpc-gateway. It
// works on any protobuf message through protoreflect:
//
//   - field names are the proto names (`applied_lsn`), and every field is written, in
//     declaration order, zero or not (a member of a oneof only when it is set; an unset
//     message field as null);
//   - a bytes field is a JSON string holding its UTF-8 text when the bytes are valid
//     UTF-8, and is otherwise written as `<name>_base64` in standard base64
//     (`{"key":"user:1","value_base64":"/wA="}`); on input either form is accepted
//     (not both); a repeated or map bytes field is written in one form for all its
//     elements (base64 as soon as one element is not UTF-8);
//   - integers of every size are JSON numbers (not strings, as protojson writes 64-bit
//     ones); on input a number or a string holding a decimal integer;
//   - enums are written by value name (`OP_PUT`); on input the name in any case, with or
//     without the enum's prefix (`put`, `PUT`, `OP_PUT`), '-' for '_' (`semi-sync`), or
//     the number;
//   - floats are JSON numbers, or the strings "NaN", "Infinity", "-Infinity";
//   - null on input leaves a field unset;
//   - an unknown field, a duplicate field, a value of the wrong type and malformed JSON
//     are errors that name the field, what is allowed and the input offset.
//
// For grpc-gateway's streams, Marshal unwraps the gateway's `{"result": msg}` envelope,
// so each streamed message is written as itself, and writes its `{"error": status}`
// chunk as the API's error object; Delimiter is "\n", making a stream newline-delimited
// JSON. A google.rpc.Status is always written as the error object
// `{"code":5,"error":"NOT_FOUND","message":"…"}`.
//
// Well-known types (Timestamp, Any…) get no special treatment: plugdb.v1 uses none.
//
// The codec is not built on protojson (nor on grpc-gateway's runtime.JSONPb, which wraps
// it): no option of protojson gives these rules. It writes bytes in base64 and 64-bit
// integers as strings, well-known types in their own forms (a DoubleValue as 1.5, not
// {"value":1.5}), floats in another format (1000000, not 1e+06), U+2028 and DEL
// unescaped, and adds random spaces to its output (detrand): reusing it would mean
// re-tokenizing its output, and its Marshal alone already takes 4 to 10 times as long
// as writing the JSON here (BenchmarkMarshal; 14 to 60 times with a token pass). On
// input it takes 1e3 and "1.0" for integers and accepts enums only by exact name, and
// its errors ("proto: (line 1:2): unknown field …") give neither the field's path, nor
// what is allowed, nor the offset; keeping these errors would mean walking the input
// with the descriptors before protojson does, which is what the decoder here does alone.
type Marshaler struct{}

var (
	_ runtime.Marshaler         = Marshaler{}
	_ runtime.Delimited         = Marshaler{}
	_ runtime.StreamContentType = Marshaler{}
)

// ContentType is application/json.
func (Marshaler) ContentType(any) string { return MIMEJSON }

// StreamContentType is application/x-ndjson: a stream is one JSON object per line.
func (Marshaler) StreamContentType(any) string { return MIMENDJSON }

// Delimiter separates the messages of a stream: a newline.
func (Marshaler) Delimiter() []byte { return []byte("\n") }

// Marshal writes v as JSON: a proto message with the codec's rules, grpc-gateway's
// stream envelopes unwrapped (see Marshaler), anything else with encoding/json.
func (Marshaler) Marshal(v any) ([]byte, error) {
	switch v := v.(type) {
	case proto.Message:
		return appendProto(nil, v)
	case map[string]any:
		// grpc-gateway's stream chunk: {"result": msg}.
		if m, ok := v["result"].(proto.Message); ok && len(v) == 1 {
			return appendProto(nil, m)
		}
	case map[string]proto.Message:
		// grpc-gateway's stream error chunk: {"error": *status.Status}.
		if m, ok := v["error"]; ok && len(v) == 1 {
			return appendProto(nil, m)
		}
	}
	return json.Marshal(v)
}

// Unmarshal reads exactly one JSON value from data into v (a proto message, or anything
// encoding/json can decode into).
func (Marshaler) Unmarshal(data []byte, v any) error {
	d := newDecoder(bytes.NewReader(data))
	if err := d.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return errors.New("malformed JSON: empty input")
		}
		return err
	}
	if tok, err := d.dec.Token(); !errors.Is(err, io.EOF) {
		if err != nil {
			return malformed(err, d.dec.InputOffset())
		}
		return fmt.Errorf("malformed JSON: unexpected %s after the JSON value (offset %d)", describeToken(tok), d.dec.InputOffset())
	}
	return nil
}

// NewDecoder returns a decoder of a sequence of JSON values, such as a request body or
// a Scan response (newline-delimited): each Decode reads the next value, and returns
// io.EOF at the end of the input. Decoding into a proto message an error object of a
// stream (`{"code":…,"error":…,"message":…}`) returns that error as a gRPC status error.
func (Marshaler) NewDecoder(r io.Reader) runtime.Decoder { return newDecoder(r) }

// NewEncoder returns an encoder that writes each value as Marshal does, followed by a
// newline.
func (m Marshaler) NewEncoder(w io.Writer) runtime.Encoder {
	return runtime.EncoderFunc(func(v any) error {
		b, err := m.Marshal(v)
		if err != nil {
			return err
		}
		_, err = w.Write(append(b, '\n'))
		return err
	})
}

// ---- encoding ----

func appendProto(b []byte, m proto.Message) ([]byte, error) {
	if m == nil {
		return append(b, "null"...), nil
	}
	if st, ok := m.(*spb.Status); ok {
		return appendStatus(b, st), nil
	}
	rm := m.ProtoReflect()
	if !rm.IsValid() {
		return append(b, "null"...), nil
	}
	return appendMessage(b, rm)
}

// appendStatus writes the API's error object: {"code":N,"error":"NAME","message":"…"}.
func appendStatus(b []byte, st *spb.Status) []byte {
	b = append(b, `{"code":`...)
	b = strconv.AppendInt(b, int64(st.GetCode()), 10)
	b = append(b, `,"error":`...)
	b = appendString(b, CodeName(codes.Code(st.GetCode())))
	b = append(b, `,"message":`...)
	b = appendString(b, st.GetMessage())
	return append(b, '}')
}

// CodeName is the canonical name of a gRPC code as in google.rpc.Code: NOT_FOUND,
// ALREADY_EXISTS, UNAVAILABLE…
func CodeName(c codes.Code) string {
	if name, ok := codepb.Code_name[int32(c)]; ok {
		return name
	}
	return "CODE_" + strconv.FormatUint(uint64(c), 10)
}

func appendMessage(b []byte, m protoreflect.Message) ([]byte, error) {
	fields := m.Descriptor().Fields()
	b = append(b, '{')
	first := true
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		if fd.ContainingOneof() != nil && !m.Has(fd) {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		var err error
		if b, err = appendField(b, m, fd); err != nil {
			return nil, err
		}
	}
	return append(b, '}'), nil
}

func appendField(b []byte, m protoreflect.Message, fd protoreflect.FieldDescriptor) ([]byte, error) {
	name := string(fd.Name())
	switch {
	case fd.IsList():
		list := m.Get(fd).List()
		b64 := false
		if fd.Kind() == protoreflect.BytesKind {
			for i := 0; i < list.Len(); i++ {
				if !utf8.Valid(list.Get(i).Bytes()) {
					b64 = true
					break
				}
			}
		}
		b = appendName(b, name, b64)
		b = append(b, '[')
		for i := 0; i < list.Len(); i++ {
			if i > 0 {
				b = append(b, ',')
			}
			var err error
			if b, err = appendValue(b, fd, list.Get(i), b64); err != nil {
				return nil, err
			}
		}
		return append(b, ']'), nil
	case fd.IsMap():
		mp := m.Get(fd).Map()
		vfd := fd.MapValue()
		type entry struct {
			key string
			val protoreflect.Value
		}
		entries := make([]entry, 0, mp.Len())
		b64 := false
		mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
			entries = append(entries, entry{k.String(), v})
			if vfd.Kind() == protoreflect.BytesKind && !utf8.Valid(v.Bytes()) {
				b64 = true
			}
			return true
		})
		sort.Slice(entries, func(i, j int) bool { return entries[i].key < entries[j].key })
		b = appendName(b, name, b64)
		b = append(b, '{')
		for i, e := range entries {
			if i > 0 {
				b = append(b, ',')
			}
			b = appendString(b, e.key)
			b = append(b, ':')
			var err error
			if b, err = appendValue(b, vfd, e.val, b64); err != nil {
				return nil, err
			}
		}
		return append(b, '}'), nil
	case fd.Message() != nil && !m.Has(fd):
		b = appendName(b, name, false)
		return append(b, "null"...), nil
	default:
		v := m.Get(fd)
		b64 := fd.Kind() == protoreflect.BytesKind && !utf8.Valid(v.Bytes())
		b = appendName(b, name, b64)
		return appendValue(b, fd, v, b64)
	}
}

func appendName(b []byte, name string, b64 bool) []byte {
	if b64 {
		name += Base64Suffix
	}
	b = appendString(b, name)
	return append(b, ':')
}

// appendValue writes one singular value of fd's kind (an element, for a list or map).
func appendValue(b []byte, fd protoreflect.FieldDescriptor, v protoreflect.Value, b64 bool) ([]byte, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		return strconv.AppendBool(b, v.Bool()), nil
	case protoreflect.EnumKind:
		if ev := fd.Enum().Values().ByNumber(v.Enum()); ev != nil {
			return appendString(b, string(ev.Name())), nil
		}
		return strconv.AppendInt(b, int64(v.Enum()), 10), nil
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind,
		protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
		return strconv.AppendInt(b, v.Int(), 10), nil
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind,
		protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		return strconv.AppendUint(b, v.Uint(), 10), nil
	case protoreflect.FloatKind:
		return appendFloat(b, v.Float(), 32), nil
	case protoreflect.DoubleKind:
		return appendFloat(b, v.Float(), 64), nil
	case protoreflect.StringKind:
		return appendString(b, v.String()), nil
	case protoreflect.BytesKind:
		if b64 {
			b = append(b, '"')
			b = base64.StdEncoding.AppendEncode(b, v.Bytes())
			return append(b, '"'), nil
		}
		return appendString(b, string(v.Bytes())), nil
	case protoreflect.MessageKind, protoreflect.GroupKind:
		if st, ok := v.Message().Interface().(*spb.Status); ok {
			return appendStatus(b, st), nil
		}
		return appendMessage(b, v.Message())
	}
	return nil, fmt.Errorf("field %s: unsupported kind %v", fd.FullName(), fd.Kind())
}

func appendFloat(b []byte, f float64, bits int) []byte {
	switch {
	case math.IsNaN(f):
		return append(b, `"NaN"`...)
	case math.IsInf(f, 1):
		return append(b, `"Infinity"`...)
	case math.IsInf(f, -1):
		return append(b, `"-Infinity"`...)
	}
	return strconv.AppendFloat(b, f, 'g', -1, bits)
}

// appendString writes s as a JSON string. Unlike encoding/json it does not escape
// <, > and & (the output is not meant for HTML); control characters are escaped, and
// an invalid UTF-8 byte (never in a proto string) becomes U+FFFD.
func appendString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c == '\n':
				b = append(b, '\\', 'n')
			case c == '\r':
				b = append(b, '\\', 'r')
			case c == '\t':
				b = append(b, '\\', 't')
			case c < 0x20 || c == 0x7f:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			b = append(b, `\ufffd`...)
		case r == '\u2028' || r == '\u2029':
			b = append(b, '\\', 'u', '2', '0', '2', hex[r&0xf])
		default:
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

// ---- decoding ----

type decoder struct {
	dec *json.Decoder
	in  *countingReader
}

// countingReader counts the bytes read, the offset of an unexpected end of input.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

func newDecoder(r io.Reader) *decoder {
	in := &countingReader{r: r}
	dec := json.NewDecoder(in)
	dec.UseNumber()
	return &decoder{dec: dec, in: in}
}

// Decode reads the next JSON value into v.
func (d *decoder) Decode(v any) error {
	var raw json.RawMessage
	if err := d.dec.Decode(&raw); err != nil {
		if errors.Is(err, io.EOF) {
			return io.EOF
		}
		return malformed(err, d.in.n)
	}
	base := d.dec.InputOffset() - int64(len(raw))
	m, ok := v.(proto.Message)
	if !ok {
		return json.Unmarshal(raw, v)
	}
	if err := asStreamError(raw, m); err != nil {
		return err
	}
	inner := json.NewDecoder(bytes.NewReader(raw))
	inner.UseNumber()
	vd := &valueDecoder{dec: inner, base: base}
	proto.Reset(m)
	tok, err := vd.token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // null: the empty message
	}
	return vd.message(m.ProtoReflect(), tok, "")
}

// asStreamError returns, when raw is the API's error object and m has no field named
// "error", that error as a gRPC status error (so a client reading a Scan stream with
// Decode gets the stream's error as an error).
func asStreamError(raw json.RawMessage, m proto.Message) error {
	if !bytes.Contains(raw, []byte(`"error"`)) {
		return nil
	}
	if m.ProtoReflect().Descriptor().Fields().ByName("error") != nil {
		return nil
	}
	var e struct {
		Code    *int32  `json:"code"`
		Error   *string `json:"error"`
		Message *string `json:"message"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if dec.Decode(&e) != nil || e.Code == nil || e.Error == nil {
		return nil
	}
	msg := ""
	if e.Message != nil {
		msg = *e.Message
	}
	return status.Error(codes.Code(*e.Code), msg)
}

func malformed(err error, offset int64) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// se.Offset counts the bytes read including the offending one.
		return fmt.Errorf("malformed JSON at offset %d: %s", max(se.Offset-1, 0), se.Error())
	case errors.Is(err, io.ErrUnexpectedEOF):
		return fmt.Errorf("malformed JSON: unexpected end of input at offset %d", offset)
	}
	return fmt.Errorf("malformed JSON at offset %d: %v", offset, err)
}

// valueDecoder walks the tokens of one JSON value; base is the value's offset in the
// whole input, for error messages.
type valueDecoder struct {
	dec  *json.Decoder
	base int64
}

func (d *valueDecoder) offset() int64 { return d.base + d.dec.InputOffset() }

func (d *valueDecoder) token() (json.Token, error) {
	tok, err := d.dec.Token()
	if err != nil {
		return nil, malformed(err, d.offset())
	}
	return tok, nil
}

func (d *valueDecoder) errorf(path, format string, args ...any) error {
	where := ""
	if path != "" {
		where = "field " + strconv.Quote(path) + ": "
	}
	return fmt.Errorf("%s%s (offset %d)", where, fmt.Sprintf(format, args...), d.offset())
}

func describeToken(tok json.Token) string {
	switch t := tok.(type) {
	case nil:
		return "null"
	case json.Delim:
		switch t {
		case '{':
			return "an object"
		case '[':
			return "an array"
		}
		return strconv.Quote(t.String())
	case string:
		if len(t) > 40 {
			t = t[:40] + "…"
		}
		return "string " + strconv.Quote(t)
	case json.Number:
		return "number " + t.String()
	case bool:
		return "boolean " + strconv.FormatBool(t)
	}
	return fmt.Sprint(tok)
}

func join(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// allowedFields lists the JSON names a message accepts, for error messages.
func allowedFields(md protoreflect.MessageDescriptor) string {
	var names []string
	fields := md.Fields()
	for i := 0; i < fields.Len(); i++ {
		fd := fields.Get(i)
		names = append(names, string(fd.Name()))
		if fd.Kind() == protoreflect.BytesKind {
			names = append(names, string(fd.Name())+Base64Suffix)
		}
	}
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}

// message decodes an object (whose first token, tok, has been read) into m.
func (d *valueDecoder) message(m protoreflect.Message, tok json.Token, path string) error {
	md := m.Descriptor()
	if tok != json.Delim('{') {
		return d.errorf(path, "expected a JSON object for %s, got %s", md.FullName(), describeToken(tok))
	}
	seen := make(map[protoreflect.FieldNumber]string)
	for d.dec.More() {
		tok, err := d.token()
		if err != nil {
			return err
		}
		name := tok.(string) // object keys are strings
		fd := md.Fields().ByName(protoreflect.Name(name))
		b64 := false
		if fd == nil && strings.HasSuffix(name, Base64Suffix) {
			fd = md.Fields().ByName(protoreflect.Name(strings.TrimSuffix(name, Base64Suffix)))
			b64 = fd != nil
			if fd != nil && fd.Kind() != protoreflect.BytesKind && !(fd.IsMap() && fd.MapValue().Kind() == protoreflect.BytesKind) {
				fd = nil
			}
		}
		if fd == nil {
			return d.errorf("", "unknown field %q in %s (allowed: %s)", join(path, name), md.FullName(), allowedFields(md))
		}
		if prev, dup := seen[fd.Number()]; dup {
			if prev == name {
				return d.errorf(join(path, name), "given twice")
			}
			return d.errorf("", "fields %q and %q both given: send one", join(path, prev), join(path, name))
		}
		seen[fd.Number()] = name
		if od := fd.ContainingOneof(); od != nil && !od.IsSynthetic() {
			if set := m.WhichOneof(od); set != nil {
				return d.errorf("", "fields %q and %q are alternatives (oneof %s): send one", join(path, string(set.Name())), join(path, name), od.Name())
			}
		}
		if err := d.field(m, fd, join(path, name), b64); err != nil {
			return err
		}
	}
	_, err := d.token() // '}'
	return err
}

func (d *valueDecoder) field(m protoreflect.Message, fd protoreflect.FieldDescriptor, path string, b64 bool) error {
	tok, err := d.token()
	if err != nil {
		return err
	}
	if tok == nil {
		return nil // null: unset
	}
	switch {
	case fd.IsList():
		if tok != json.Delim('[') {
			return d.errorf(path, "expected an array, got %s", describeToken(tok))
		}
		list := m.Mutable(fd).List()
		for i := 0; d.dec.More(); i++ {
			tok, err := d.token()
			if err != nil {
				return err
			}
			elem := path + "[" + strconv.Itoa(i) + "]"
			if fd.Message() != nil {
				v := list.NewElement()
				if err := d.message(v.Message(), tok, elem); err != nil {
					return err
				}
				list.Append(v)
				continue
			}
			v, err := d.scalar(fd, tok, elem, b64)
			if err != nil {
				return err
			}
			list.Append(v)
		}
		_, err := d.token() // ']'
		return err
	case fd.IsMap():
		if tok != json.Delim('{') {
			return d.errorf(path, "expected an object, got %s", describeToken(tok))
		}
		mp := m.Mutable(fd).Map()
		kfd, vfd := fd.MapKey(), fd.MapValue()
		for d.dec.More() {
			tok, err := d.token()
			if err != nil {
				return err
			}
			ks := tok.(string)
			elem := path + "[" + strconv.Quote(ks) + "]"
			kv, err := d.mapKey(kfd, ks, elem)
			if err != nil {
				return err
			}
			if mp.Has(kv.MapKey()) {
				return d.errorf(elem, "key given twice")
			}
			if tok, err = d.token(); err != nil {
				return err
			}
			if vfd.Message() != nil {
				v := mp.NewValue()
				if err := d.message(v.Message(), tok, elem); err != nil {
					return err
				}
				mp.Set(kv.MapKey(), v)
				continue
			}
			v, err := d.scalar(vfd, tok, elem, b64)
			if err != nil {
				return err
			}
			mp.Set(kv.MapKey(), v)
		}
		_, err := d.token() // '}'
		return err
	case fd.Message() != nil:
		return d.message(m.Mutable(fd).Message(), tok, path)
	}
	v, err := d.scalar(fd, tok, path, b64)
	if err != nil {
		return err
	}
	m.Set(fd, v)
	return nil
}

func (d *valueDecoder) mapKey(fd protoreflect.FieldDescriptor, s, path string) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.StringKind:
		return protoreflect.ValueOfString(s), nil
	case protoreflect.BoolKind:
		switch s {
		case "true":
			return protoreflect.ValueOfBool(true), nil
		case "false":
			return protoreflect.ValueOfBool(false), nil
		}
		return protoreflect.Value{}, d.errorf(path, "map key must be true or false")
	}
	return d.integer(fd, s, path)
}

// scalar decodes one non-message value of fd's kind from tok.
func (d *valueDecoder) scalar(fd protoreflect.FieldDescriptor, tok json.Token, path string, b64 bool) (protoreflect.Value, error) {
	switch fd.Kind() {
	case protoreflect.BoolKind:
		if v, ok := tok.(bool); ok {
			return protoreflect.ValueOfBool(v), nil
		}
		return protoreflect.Value{}, d.errorf(path, "expected true or false, got %s", describeToken(tok))
	case protoreflect.StringKind:
		if v, ok := tok.(string); ok {
			return protoreflect.ValueOfString(v), nil
		}
		return protoreflect.Value{}, d.errorf(path, "expected a string, got %s", describeToken(tok))
	case protoreflect.BytesKind:
		s, ok := tok.(string)
		if !ok {
			if b64 {
				return protoreflect.Value{}, d.errorf(path, "expected a string of base64, got %s", describeToken(tok))
			}
			return protoreflect.Value{}, d.errorf(path, "expected a string (UTF-8 text; or %s with base64), got %s", fieldName(path)+Base64Suffix, describeToken(tok))
		}
		if !b64 {
			return protoreflect.ValueOfBytes([]byte(s)), nil
		}
		b, err := decodeBase64(s)
		if err != nil {
			return protoreflect.Value{}, d.errorf(path, "invalid base64: %v", err)
		}
		return protoreflect.ValueOfBytes(b), nil
	case protoreflect.EnumKind:
		return d.enum(fd.Enum(), tok, path)
	case protoreflect.FloatKind, protoreflect.DoubleKind:
		var s string
		switch t := tok.(type) {
		case json.Number:
			s = t.String()
		case string:
			switch t {
			case "NaN", "Infinity", "-Infinity":
				f, _ := strconv.ParseFloat(t, 64)
				return floatValue(fd, f), nil
			}
			s = t
		default:
			return protoreflect.Value{}, d.errorf(path, "expected a number, got %s", describeToken(tok))
		}
		bits := 64
		if fd.Kind() == protoreflect.FloatKind {
			bits = 32
		}
		f, err := strconv.ParseFloat(s, bits)
		if err != nil {
			return protoreflect.Value{}, d.errorf(path, "expected a number, got %s", describeToken(tok))
		}
		return floatValue(fd, f), nil
	}
	var s string
	switch t := tok.(type) {
	case json.Number:
		s = t.String()
	case string:
		s = t
	default:
		return protoreflect.Value{}, d.errorf(path, "expected an integer, got %s", describeToken(tok))
	}
	return d.integer(fd, s, path)
}

func fieldName(path string) string {
	if i := strings.LastIndexAny(path, ".["); i >= 0 && path[i] == '.' {
		return path[i+1:]
	}
	if i := strings.IndexByte(path, '['); i >= 0 {
		return fieldName(path[:i])
	}
	return path
}

func floatValue(fd protoreflect.FieldDescriptor, f float64) protoreflect.Value {
	if fd.Kind() == protoreflect.FloatKind {
		return protoreflect.ValueOfFloat32(float32(f))
	}
	return protoreflect.ValueOfFloat64(f)
}

func (d *valueDecoder) integer(fd protoreflect.FieldDescriptor, s, path string) (protoreflect.Value, error) {
	var (
		bits     = 64
		unsigned bool
	)
	switch fd.Kind() {
	case protoreflect.Int32Kind, protoreflect.Sint32Kind, protoreflect.Sfixed32Kind:
		bits = 32
	case protoreflect.Uint32Kind, protoreflect.Fixed32Kind:
		bits, unsigned = 32, true
	case protoreflect.Uint64Kind, protoreflect.Fixed64Kind:
		unsigned = true
	case protoreflect.Int64Kind, protoreflect.Sint64Kind, protoreflect.Sfixed64Kind:
	default:
		return protoreflect.Value{}, fmt.Errorf("field %s: unsupported kind %v", fd.FullName(), fd.Kind())
	}
	if unsigned {
		u, err := strconv.ParseUint(s, 10, bits)
		if err != nil {
			return protoreflect.Value{}, d.errorf(path, "expected an integer from 0 to %d, got %s", uint64(1)<<bits-1, strconv.Quote(s))
		}
		if bits == 32 {
			return protoreflect.ValueOfUint32(uint32(u)), nil
		}
		return protoreflect.ValueOfUint64(u), nil
	}
	i, err := strconv.ParseInt(s, 10, bits)
	if err != nil {
		return protoreflect.Value{}, d.errorf(path, "expected an integer from %d to %d, got %s", -(int64(1) << (bits - 1)), int64(1)<<(bits-1)-1, strconv.Quote(s))
	}
	if bits == 32 {
		return protoreflect.ValueOfInt32(int32(i)), nil
	}
	return protoreflect.ValueOfInt64(i), nil
}

// enumPrefix is the conventional prefix of an enum's value names: the enum's name in
// upper snake case and "_" (Op → OP_, BatchMode → BATCH_MODE_).
func enumPrefix(ed protoreflect.EnumDescriptor) string {
	var b strings.Builder
	name := string(ed.Name())
	for i, r := range name {
		if i > 0 && r >= 'A' && r <= 'Z' {
			prev := name[i-1]
			if prev >= 'a' && prev <= 'z' || prev >= '0' && prev <= '9' {
				b.WriteByte('_')
			}
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String()) + "_"
}

func (d *valueDecoder) enum(ed protoreflect.EnumDescriptor, tok json.Token, path string) (protoreflect.Value, error) {
	values := ed.Values()
	prefix := enumPrefix(ed)
	switch t := tok.(type) {
	case json.Number:
		n, err := strconv.ParseInt(t.String(), 10, 32)
		if err == nil {
			if values.ByNumber(protoreflect.EnumNumber(n)) != nil || !ed.IsClosed() {
				return protoreflect.ValueOfEnum(protoreflect.EnumNumber(n)), nil
			}
		}
	case string:
		want := strings.ToUpper(strings.ReplaceAll(t, "-", "_")) // semi-sync: SEMI_SYNC
		for i := 0; i < values.Len(); i++ {
			ev := values.Get(i)
			name := string(ev.Name())
			if want == name || prefix+want == name {
				return protoreflect.ValueOfEnum(ev.Number()), nil
			}
		}
	}
	var names []string
	for i := 0; i < values.Len(); i++ {
		name := string(values.Get(i).Name())
		if short, ok := strings.CutPrefix(name, prefix); ok {
			name = strings.ToLower(short)
		}
		names = append(names, strconv.Quote(name))
	}
	return protoreflect.Value{}, d.errorf(path, "invalid %s %s (allowed: %s, in any case, with or without the %s prefix)",
		ed.Name(), describeToken(tok), strings.Join(names, ", "), prefix)
}

// decodeBase64 accepts standard base64, padded or not, and the URL-safe alphabet.
func decodeBase64(s string) ([]byte, error) {
	enc := base64.StdEncoding
	if strings.ContainsAny(s, "-_") {
		enc = base64.URLEncoding
	}
	if !strings.HasSuffix(s, "=") && len(s)%4 != 0 {
		enc = enc.WithPadding(base64.NoPadding)
	}
	return enc.DecodeString(s)
}
