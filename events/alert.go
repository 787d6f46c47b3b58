package events

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"time"
)

// The alert stream. Alerts are published on alerts.<partition>.<rule> in the
// ALERTS stream (which holds the actions too, see Action), each a CloudEvent of type AlertRaised whose data is an
// Alert. The partition is the user's (or, for alerts about an IP, that of
// the IP's text), so per-user order holds for alerts as for events.
const (
	AlertStreamName = "ALERTS"
	AlertSubjects   = "alerts.>"
	AlertRaised     = "alert.raised"
	// DeadLetterSubjects carry events a consumer could not decode, with
	// the reason in the header Sessionmon-Dead-Letter-Reason.
	DeadLetterSubjects = "deadletter.>"
)

// Alert is what a detector rule raises: explainable by itself.
type Alert struct {
	// ID is derived from the rule, the key it fired for and the event that
	// fired it, so a detector replaying history raises the same IDs and
	// consumers de-duplicate them.
	ID string `json:"id"`
	// Time is the time of the event that fired the rule.
	Time        time.Time `json:"time"`
	Rule        string    `json:"rule"`
	RuleType    string    `json:"rule_type"`
	RuleVersion string    `json:"rule_version"`
	Severity    string    `json:"severity"`
	UserID      string    `json:"user_id,omitempty"`
	SessionIDs  []string  `json:"session_ids,omitempty"`
	// IP is the address an IP-scoped rule fired for.
	IP string `json:"ip,omitempty"`
	// Action is what the rule asks for: alert, reauth, revoke_session or
	// revoke_user; Target is the session (or user) it applies to.
	Action string `json:"action"`
	Target string `json:"target,omitempty"`
	// Mode is enforce or log_only (the action is not carried out).
	Mode string `json:"mode"`
	// ActionResult: none (alert only), log_only, done, failed, or queued
	// (the session service could not be reached; retried).
	ActionResult string   `json:"action_result"`
	Summary      string   `json:"summary"`
	Evidence     Evidence `json:"evidence"`
}

// Evidence explains an alert. Fields apply by rule type.
type Evidence struct {
	Events []EventRef `json:"events"`
	// impossible_travel
	DistanceKm          float64 `json:"distance_km,omitempty"`
	EffectiveDistanceKm float64 `json:"effective_distance_km,omitempty"`
	SpeedKmh            float64 `json:"speed_kmh,omitempty"`
	ElapsedSeconds      float64 `json:"elapsed_seconds,omitempty"`
	SameSession         bool    `json:"same_session,omitempty"`
	// shared_session
	IPs        []string `json:"ips,omitempty"`
	UserAgents []string `json:"user_agents,omitempty"`
	// request_burst, brute_force, credential_stuffing
	Count         int      `json:"count,omitempty"`
	Threshold     int      `json:"threshold,omitempty"`
	WindowSeconds float64  `json:"window_seconds,omitempty"`
	Users         []string `json:"users,omitempty"`
	// new_country
	Country        string   `json:"country,omitempty"`
	KnownCountries []string `json:"known_countries,omitempty"`
}

// EventRef is an event cited as evidence, with where it came from.
type EventRef struct {
	ID         string    `json:"id"`
	Type       Type      `json:"type"`
	Time       time.Time `json:"time"`
	SessionID  string    `json:"session_id,omitempty"`
	IP         string    `json:"ip,omitempty"`
	UserAgent  string    `json:"user_agent,omitempty"`
	Country    string    `json:"country,omitempty"`
	City       string    `json:"city,omitempty"`
	Lat        float64   `json:"lat,omitempty"`
	Lon        float64   `json:"lon,omitempty"`
	AccuracyKm float64   `json:"accuracy_km,omitempty"`
	ASN        uint32    `json:"asn,omitempty"`
}

// AlertID derives an alert's ID from its rule, key and firing event.
func AlertID(rule, key, eventID string) string {
	h := sha256.Sum256([]byte(rule + "\x00" + key + "\x00" + eventID))
	return hex.EncodeToString(h[:16])
}

// AlertSubject is the subject of an alert.
func AlertSubject(a Alert) string {
	key := a.UserID
	if key == "" {
		key = a.IP
	}
	return fmt.Sprintf("alerts.%02d.%s", PartitionOf(key), a.Rule)
}

// EncodeAlert wraps an alert in a CloudEvent of type AlertRaised.
func EncodeAlert(a Alert, source string) ([]byte, error) {
	return encodeEnvelope(a.ID, source, AlertRaised, a.Time, a.UserID, AlertSchema, a)
}

// AlertSchema names the version of the alert payload.
const AlertSchema = "urn:sessionmon:alerts:v1"
