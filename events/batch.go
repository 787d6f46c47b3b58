package events

import (
	"bytes"
	"fmt"

	json "github.com/segmentio/encoding/json"
)

// Messages of the session event stream hold one event or a batch of them.
//
// Publishing and consuming cost JetStream about the same per message
// whatever its size, and one event a message is what limits how many events
// a second the pipeline carries. So the publisher packs consecutive events
// that share a subject (one partition, one type: a run of accesses of one
// partition, typically) into one message, a CloudEvents JSON batch: a JSON
// array of events, in order. Under light load a run is one event long and
// a message is a single event, a JSON object, exactly as before. The
// Content-Type header tells them apart for other tools; Split needs only
// the first byte.
const (
	// ContentType is the Content-Type of a message holding one event.
	ContentType = "application/cloudevents+json"
	// BatchContentType is the Content-Type of a message holding a batch.
	BatchContentType = "application/cloudevents-batch+json"
	// MaxBatchEvents bounds the events of one message; Split rejects
	// more.
	MaxBatchEvents = 4096
)

// EncodeBatch appends the encoding of evs as one message to dst: the event
// itself when there is one, a CloudEvents JSON batch otherwise.
func EncodeBatch(dst []byte, evs []Event) ([]byte, error) {
	parts := make([][]byte, len(evs))
	for i, e := range evs {
		b, err := e.Encode()
		if err != nil {
			return dst, fmt.Errorf("event %s: %w", e.ID, err)
		}
		parts[i] = b
	}
	return JoinBatch(dst, parts), nil
}

// JoinBatch appends to dst the message of events already encoded: the
// event itself when there is one, their CloudEvents JSON batch otherwise.
func JoinBatch(dst []byte, parts [][]byte) []byte {
	if len(parts) == 1 {
		return append(dst, parts[0]...)
	}
	dst = append(dst, '[')
	for i, b := range parts {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = append(dst, b...)
	}
	return append(dst, ']')
}

// Split returns the encoded events a message holds: the message itself
// when it is one event (a JSON object), the elements of a batch (a JSON
// array) otherwise. The elements share data's memory. A message that is
// neither, an empty batch or one of more than MaxBatchEvents is an error;
// each element is decoded (and may be rejected) on its own.
func Split(data []byte) ([][]byte, error) {
	b := bytes.TrimLeft(data, " \t\r\n")
	if len(b) == 0 || b[0] != '[' {
		return [][]byte{data}, nil
	}
	var raw []json.RawMessage
	rest, err := json.Parse(b, &raw, json.DontCopyRawMessage)
	if err != nil {
		return nil, &DecodeError{Reason: "batch: " + err.Error()}
	}
	if len(bytes.TrimLeft(rest, " \t\r\n")) != 0 {
		return nil, &DecodeError{Reason: "batch: data after the array"}
	}
	if len(raw) == 0 {
		return nil, &DecodeError{Reason: "batch: empty"}
	}
	if len(raw) > MaxBatchEvents {
		return nil, &DecodeError{Reason: fmt.Sprintf("batch: %d events, more than %d", len(raw), MaxBatchEvents)}
	}
	out := make([][]byte, len(raw))
	for i, r := range raw {
		out[i] = r
	}
	return out, nil
}

// DecodeMessage splits and decodes a message: its events, or the first
// error. Consumers that must keep the good events of a batch with a bad
// one call Split and Decode themselves.
func DecodeMessage(data []byte) ([]Event, error) {
	parts, err := Split(data)
	if err != nil {
		return nil, err
	}
	evs := make([]Event, 0, len(parts))
	for i, p := range parts {
		e, err := Decode(p)
		if err != nil {
			if len(parts) > 1 {
				return nil, fmt.Errorf("batch element %d: %w", i, err)
			}
			return nil, err
		}
		evs = append(evs, e)
	}
	return evs, nil
}
