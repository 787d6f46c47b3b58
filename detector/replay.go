package detector

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"

	"github.com/sessionmon/sessionmon/events"
)

// ReplayStats counts what a replay saw.
type ReplayStats struct {
	Events int
	Alerts int
}

// Replay feeds the events of r (JSON lines, one CloudEvent each, in stream
// order) to the engine and writes each alert it raises to w as a JSON line.
// It runs on the events' own clock, so the same input gives the same
// output. A line that is not a valid event stops the replay with an error
// naming the line, and so does an event whose time the detector refuses
// (CheckTime: the live service dead-letters it).
func Replay(e *Engine, r io.Reader, w io.Writer) (ReplayStats, error) {
	var st ReplayStats
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), events.MaxSize+1)
	enc := json.NewEncoder(w)
	for line := 1; sc.Scan(); line++ {
		b := sc.Bytes()
		if len(trimSpace(b)) == 0 {
			continue
		}
		ev, err := events.Decode(b)
		if err == nil {
			err = CheckTime(ev.Time)
		}
		if err != nil {
			return st, fmt.Errorf("line %d: %w", line, err)
		}
		st.Events++
		for _, a := range e.Process(ev) {
			st.Alerts++
			if err := enc.Encode(a); err != nil {
				return st, err
			}
		}
	}
	if err := sc.Err(); err != nil {
		return st, fmt.Errorf("reading events: %w", err)
	}
	return st, nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t' || b[0] == '\r') {
		b = b[1:]
	}
	return b
}

// ReplayEach is Replay over events handed over by each (a reader of the
// audit log, say), which calls its argument for every event in order. An
// event whose time the detector refuses stops it with an error naming the
// event.
func ReplayEach(e *Engine, each func(fn func(events.Event) error) error, w io.Writer) (ReplayStats, error) {
	var st ReplayStats
	enc := json.NewEncoder(w)
	err := each(func(ev events.Event) error {
		if err := CheckTime(ev.Time); err != nil {
			return fmt.Errorf("event %s: %w", ev.ID, err)
		}
		st.Events++
		for _, a := range e.Process(ev) {
			st.Alerts++
			if err := enc.Encode(a); err != nil {
				return err
			}
		}
		return nil
	})
	return st, err
}
