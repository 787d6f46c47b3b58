package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"github.com/sessionmon/sessionmon/events"
)

// Rejection is why a message cannot be written to the audit log: it goes
// to the dead-letter stream with this reason, counted by Reason (a short,
// bounded label).
type Rejection struct {
	Reason string
	Err    error
}

func (r *Rejection) Error() string        { return r.Reason + ": " + r.Err.Error() }
func (r *Rejection) Unwrap() error        { return r.Err }
func (r *Rejection) RejectReason() string { return r.Reason }

// DecodeRejection classifies a decoding error by the field it names:
// bad_data_ip, too_large, malformed...
func DecodeRejection(err error) *Rejection {
	var de *events.DecodeError
	if errors.As(err, &de) {
		switch {
		case de.Field != "":
			return &Rejection{Reason: "bad_" + strings.NewReplacer(".", "_").Replace(de.Field), Err: err}
		case strings.HasPrefix(de.Reason, "larger than"):
			return &Rejection{Reason: "too_large", Err: err}
		}
	}
	return &Rejection{Reason: "malformed", Err: err}
}

// AlertMessage is a decoded message of the ALERTS stream: an alert or an
// action, and the CloudEvents source that published it.
type AlertMessage struct {
	Alert  *events.Alert
	Action *events.Action
	Source string
}

// DecodeAlertMessage decodes an alert (subject alerts.>) or an action
// (actions.>). Errors are *Rejection.
func DecodeAlertMessage(subject string, data []byte) (AlertMessage, error) {
	switch {
	case strings.HasPrefix(subject, "alerts."):
		a, err := events.DecodeAlert(data)
		if err != nil {
			return AlertMessage{}, DecodeRejection(err)
		}
		return AlertMessage{Alert: &a, Source: sourceOf(data)}, nil
	case strings.HasPrefix(subject, "actions."):
		a, err := events.DecodeAction(data)
		if err != nil {
			return AlertMessage{}, DecodeRejection(err)
		}
		return AlertMessage{Action: &a, Source: sourceOf(data)}, nil
	}
	return AlertMessage{}, &Rejection{Reason: "unknown_subject", Err: fmt.Errorf("subject %q is neither alerts.> nor actions.>", subject)}
}

// sourceOf reads the CloudEvents source of an already decoded envelope.
func sourceOf(data []byte) string {
	var env struct {
		Source string `json:"source"`
	}
	_ = json.Unmarshal(data, &env)
	return env.Source
}

// AlertEvidence is what the audit log keeps of an alert's evidence and
// summary: as they are, or with every address replaced by its pseudonym
// when p pseudonymizes.
func (p *IPPolicy) AlertEvidence(a events.Alert) (events.Evidence, string) {
	if !p.Pseudonymizes() {
		return a.Evidence, a.Summary
	}
	ev := a.Evidence
	var pairs []string
	sub := func(ip string) string {
		if ip == "" {
			return ""
		}
		ps := p.Pseudonym(ip)
		pairs = append(pairs, ip, ps)
		return ps
	}
	sub(a.IP)
	ev.Events = append([]events.EventRef(nil), ev.Events...)
	for i := range ev.Events {
		ev.Events[i].IP = sub(ev.Events[i].IP)
	}
	ev.IPs = append([]string(nil), ev.IPs...)
	for i := range ev.IPs {
		ev.IPs[i] = sub(ev.IPs[i])
	}
	summary := a.Summary
	if len(pairs) > 0 {
		// Longest first, so that 203.0.113.70 is not rewritten as the
		// pseudonym of 203.0.113.7 followed by a 0.
		for i := 0; i < len(pairs); i += 2 {
			for j := i + 2; j < len(pairs); j += 2 {
				if len(pairs[j]) > len(pairs[i]) {
					pairs[i], pairs[j] = pairs[j], pairs[i]
					pairs[i+1], pairs[j+1] = pairs[j+1], pairs[i+1]
				}
			}
		}
		summary = strings.NewReplacer(pairs...).Replace(summary)
	}
	return ev, summary
}
