// Package rules defines the detector's rules as data: a YAML file of rules,
// each of a type with its own settings, checked at load with errors that
// name the file, line, rule, field and reason. Without a file the built-in
// defaults (Default) apply.
package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Type is the kind of a rule.
type Type string

// Rule types.
const (
	ImpossibleTravel   Type = "impossible_travel"
	SharedSession      Type = "shared_session"
	RequestBurst       Type = "request_burst"
	BruteForce         Type = "brute_force"
	CredentialStuffing Type = "credential_stuffing"
	NewCountry         Type = "new_country"
)

var types = []Type{ImpossibleTravel, SharedSession, RequestBurst, BruteForce, CredentialStuffing, NewCountry}

// Severity of the alerts a rule raises.
type Severity string

// Severities.
const (
	Low      Severity = "low"
	Medium   Severity = "medium"
	High     Severity = "high"
	Critical Severity = "critical"
)

// Action is what the detector does when a rule fires.
type Action string

// Actions. Every firing raises an alert; the others also call the session
// service.
const (
	ActionAlert         Action = "alert"
	ActionReauth        Action = "reauth"
	ActionRevokeSession Action = "revoke_session"
	ActionRevokeUser    Action = "revoke_user"
)

// Mode says whether a rule's action is carried out.
type Mode string

// Modes: log_only raises the alert but takes no action, for trying a rule.
const (
	Enforce Mode = "enforce"
	LogOnly Mode = "log_only"
)

// Scope of a request_burst rule: one session, or one IP across sessions.
type Scope string

// Scopes.
const (
	ScopeSession Scope = "session"
	ScopeIP      Scope = "ip"
)

// Duration is a time.Duration written as a Go duration string ("5m").
type Duration time.Duration

// UnmarshalYAML implements yaml.Unmarshaler.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		// yaml.v3 passes this error on as it is: give it the line.
		return fmt.Errorf("line %d: %q is not a duration such as 30s, 5m or 720h", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration as a string, for versions and evidence.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// D returns the time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }

// Allow lists what a rule never fires for.
type Allow struct {
	CIDRs []string `yaml:"cidrs" json:"cidrs,omitempty"`
	Users []string `yaml:"users" json:"users,omitempty"`
	ASNs  []uint32 `yaml:"asns" json:"asns,omitempty"`

	prefixes []netip.Prefix
}

// Rule is one rule. Which fields apply depends on Type; Validate says
// which are required and which are not allowed.
type Rule struct {
	Name     string   `yaml:"name" json:"name"`
	Type     Type     `yaml:"type" json:"type"`
	Severity Severity `yaml:"severity" json:"severity"`
	Action   Action   `yaml:"action" json:"action"`
	Mode     Mode     `yaml:"mode" json:"mode"`
	// Cooldown: after the rule fires for a key (user, session or IP), it
	// stays quiet for that key this long, so one incident is one alert.
	Cooldown Duration `yaml:"cooldown" json:"cooldown"`
	Allow    Allow    `yaml:"allow" json:"allow"`

	// impossible_travel
	MaxSpeedKmh   float64 `yaml:"max_speed_kmh" json:"max_speed_kmh,omitempty"`
	MinDistanceKm float64 `yaml:"min_distance_km" json:"min_distance_km,omitempty"`
	// SameSessionAction applies when both events are of one session.
	SameSessionAction Action `yaml:"same_session_action" json:"same_session_action,omitempty"`

	// shared_session, request_burst, brute_force, credential_stuffing
	Window Duration `yaml:"window" json:"window,omitempty"`
	// request_burst, brute_force: more than Threshold events in Window
	// (brute_force: Threshold or more failed logins).
	Threshold int   `yaml:"threshold" json:"threshold,omitempty"`
	Scope     Scope `yaml:"scope" json:"scope,omitempty"`
	// credential_stuffing: failed logins for this many distinct users.
	DistinctUsers int `yaml:"distinct_users" json:"distinct_users,omitempty"`
	// shared_session: also fire when the user agent changes mid-session.
	UserAgentChange *bool `yaml:"user_agent_change" json:"user_agent_change,omitempty"`

	// new_country: how far back a user's countries are remembered.
	History Duration `yaml:"history" json:"history,omitempty"`

	// Line is the rule's line in its file (0 for built-in rules).
	Line int `yaml:"-" json:"-"`
	// Version is a hash of the rule's settings, carried by its alerts.
	Version string `yaml:"-" json:"-"`
}

// Set is a validated set of rules.
type Set struct {
	Rules  []*Rule
	Source string // file name, or "built-in"
}

// Version identifies the whole set: a hash of its rules' names and
// versions, in order.
func (s *Set) Version() string {
	h := sha256.New()
	for _, r := range s.Rules {
		h.Write([]byte(r.Name + "\x00" + r.Version + "\x00"))
	}
	return hex.EncodeToString(h.Sum(nil)[:6])
}

// ByType returns the enabled rules of a type.
func (s *Set) ByType(t Type) []*Rule {
	var out []*Rule
	for _, r := range s.Rules {
		if r.Type == t {
			out = append(out, r)
		}
	}
	return out
}

// file is the YAML form; nodes is the same file as nodes, for the lines
// of the errors Validate finds.
type (
	file struct {
		Rules []*Rule `yaml:"rules"`
	}
	nodes struct {
		Rules []yaml.Node `yaml:"rules"`
	}
)

// Error is a problem with a rules file.
type Error struct {
	File  string
	Line  int
	Rule  string
	Field string
	Msg   string
}

func (e *Error) Error() string {
	var b bytes.Buffer
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Rule != "" {
		fmt.Fprintf(&b, ": rule %q", e.Rule)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// Load reads and validates a rules file.
func Load(path string) (*Set, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("rules file: %w", err)
	}
	return Parse(path, b)
}

// MaxFileSize bounds a rules file.
const MaxFileSize = 1 << 20

// Parse reads and validates rules from data; name is used in errors.
func Parse(name string, data []byte) (*Set, error) {
	if len(data) > MaxFileSize {
		return nil, &Error{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxFileSize)}
	}
	var f file
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, yamlErr(name, err)
	}
	var ns nodes
	if err := yaml.Unmarshal(data, &ns); err != nil || len(ns.Rules) != len(f.Rules) {
		return nil, &Error{File: name, Msg: "cannot read the rules' positions"}
	}
	if len(f.Rules) == 0 {
		return nil, &Error{File: name, Msg: "no rules: the file must have a non-empty 'rules' list"}
	}
	set := &Set{Source: name}
	seen := map[string]int{}
	for i, r := range f.Rules {
		n := &ns.Rules[i]
		if r == nil {
			return nil, &Error{File: name, Line: n.Line, Msg: "empty rule"}
		}
		r.Line = n.Line
		if err := r.Validate(); err != nil {
			var e *Error
			if errors.As(err, &e) {
				e.File, e.Line = name, fieldLine(n, e.Field, n.Line)
				return nil, e
			}
			return nil, err
		}
		if prev, dup := seen[r.Name]; dup {
			return nil, &Error{File: name, Line: n.Line, Rule: r.Name, Field: "name", Msg: fmt.Sprintf("used twice (first on line %d)", prev)}
		}
		seen[r.Name] = n.Line
		set.Rules = append(set.Rules, r)
	}
	return set, nil
}

func cutLine(s string) (int, string) {
	var n int
	if k, err := fmt.Sscanf(s, "line %d:", &n); err != nil || k != 1 {
		return 0, s
	}
	_, rest, _ := strings.Cut(s, ": ")
	return n, rest
}

// fieldLine is the line of field in a rule's mapping node, or def.
func fieldLine(n *yaml.Node, field string, def int) int {
	field, _, _ = strings.Cut(field, ".") // allow.cidrs: the line of allow
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == field {
			return n.Content[i].Line
		}
	}
	return def
}

func yamlErr(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		line, msg := cutLine(te.Errors[0])
		msg = strings.Replace(msg, "in type rules.Rule", "in a rule", 1)
		msg = strings.Replace(msg, "in type rules.file", "at the top level (want 'rules')", 1)
		return &Error{File: file, Line: line, Msg: msg}
	}
	if errors.Is(err, io.EOF) {
		return &Error{File: file, Msg: "empty file"}
	}
	line, msg := cutLine(strings.TrimPrefix(err.Error(), "yaml: "))
	return &Error{File: file, Line: line, Msg: msg}
}

func bad(field, format string, args ...any) error {
	return &Error{Field: field, Msg: fmt.Sprintf(format, args...)}
}

// Validate checks a rule, fills defaults of optional fields, and computes
// its version. Errors name the field.
func (r *Rule) Validate() error {
	if r.Name == "" {
		return bad("name", "required")
	}
	errRule := func(err error) error {
		var e *Error
		if errors.As(err, &e) {
			e.Rule = r.Name
		}
		return err
	}
	if err := r.validate(); err != nil {
		return errRule(err)
	}
	v, _ := json.Marshal(r)
	sum := sha256.Sum256(v)
	r.Version = hex.EncodeToString(sum[:6])
	return nil
}

func (r *Rule) validate() error {
	if !slices.Contains(types, r.Type) {
		return bad("type", "must be one of %v, got %q", types, r.Type)
	}
	if r.Severity == "" {
		r.Severity = Medium
	}
	if !slices.Contains([]Severity{Low, Medium, High, Critical}, r.Severity) {
		return bad("severity", "must be low, medium, high or critical, got %q", r.Severity)
	}
	if r.Action == "" {
		r.Action = ActionAlert
	}
	if err := checkAction("action", r.Action); err != nil {
		return err
	}
	if r.Mode == "" {
		r.Mode = Enforce
	}
	if r.Mode != Enforce && r.Mode != LogOnly {
		return bad("mode", "must be enforce or log_only, got %q", r.Mode)
	}
	if r.Cooldown < 0 {
		return bad("cooldown", "must not be negative")
	}
	if r.Cooldown == 0 {
		r.Cooldown = Duration(10 * time.Minute)
	}
	if err := r.Allow.compile(); err != nil {
		return err
	}
	only := func(field string, set bool, types ...Type) error {
		if set && !slices.Contains(types, r.Type) {
			return bad(field, "does not apply to rules of type %s", r.Type)
		}
		return nil
	}
	for _, err := range []error{
		only("max_speed_kmh", r.MaxSpeedKmh != 0, ImpossibleTravel),
		only("min_distance_km", r.MinDistanceKm != 0, ImpossibleTravel),
		only("same_session_action", r.SameSessionAction != "", ImpossibleTravel),
		only("window", r.Window != 0, SharedSession, RequestBurst, BruteForce, CredentialStuffing),
		only("threshold", r.Threshold != 0, RequestBurst, BruteForce),
		only("scope", r.Scope != "", RequestBurst),
		only("distinct_users", r.DistinctUsers != 0, CredentialStuffing),
		only("user_agent_change", r.UserAgentChange != nil, SharedSession),
		only("history", r.History != 0, NewCountry),
	} {
		if err != nil {
			return err
		}
	}
	positive := func(field string, v float64) error {
		if v <= 0 {
			return bad(field, "must be positive")
		}
		return nil
	}
	switch r.Type {
	case ImpossibleTravel:
		if r.MaxSpeedKmh == 0 {
			r.MaxSpeedKmh = 1000
		}
		if r.MinDistanceKm == 0 {
			r.MinDistanceKm = 100
		}
		if err := positive("max_speed_kmh", r.MaxSpeedKmh); err != nil {
			return err
		}
		if err := positive("min_distance_km", r.MinDistanceKm); err != nil {
			return err
		}
		if r.SameSessionAction == "" {
			r.SameSessionAction = r.Action
		}
		return checkAction("same_session_action", r.SameSessionAction)
	case SharedSession:
		if r.UserAgentChange == nil {
			t := true
			r.UserAgentChange = &t
		}
		return r.window(5 * time.Minute)
	case RequestBurst:
		if r.Scope == "" {
			r.Scope = ScopeSession
		}
		if r.Scope != ScopeSession && r.Scope != ScopeIP {
			return bad("scope", "must be session or ip, got %q", r.Scope)
		}
		if err := r.threshold(100); err != nil {
			return err
		}
		return r.window(10 * time.Second)
	case BruteForce:
		if err := r.threshold(10); err != nil {
			return err
		}
		return r.window(5 * time.Minute)
	case CredentialStuffing:
		if r.DistinctUsers == 0 {
			r.DistinctUsers = 20
		}
		if r.DistinctUsers < 2 {
			return bad("distinct_users", "must be at least 2, got %d", r.DistinctUsers)
		}
		return r.window(5 * time.Minute)
	case NewCountry:
		if r.History == 0 {
			r.History = Duration(30 * 24 * time.Hour)
		}
		if r.History < 0 {
			return bad("history", "must be positive")
		}
	}
	return nil
}

func (r *Rule) window(def time.Duration) error {
	if r.Window == 0 {
		r.Window = Duration(def)
	}
	if r.Window < 0 {
		return bad("window", "must be positive")
	}
	return nil
}

func (r *Rule) threshold(def int) error {
	if r.Threshold == 0 {
		r.Threshold = def
	}
	if r.Threshold < 1 {
		return bad("threshold", "must be at least 1, got %d", r.Threshold)
	}
	return nil
}

func checkAction(field string, a Action) error {
	if !slices.Contains([]Action{ActionAlert, ActionReauth, ActionRevokeSession, ActionRevokeUser}, a) {
		return bad(field, "must be alert, reauth, revoke_session or revoke_user, got %q", a)
	}
	return nil
}

func (a *Allow) compile() error {
	a.prefixes = a.prefixes[:0]
	for _, c := range a.CIDRs {
		p, err := netip.ParsePrefix(c)
		if err != nil {
			if ip, err2 := netip.ParseAddr(c); err2 == nil {
				p = netip.PrefixFrom(ip, ip.BitLen())
			} else {
				return bad("allow.cidrs", "%q is not a CIDR or an IP address", c)
			}
		}
		a.prefixes = append(a.prefixes, p.Masked())
	}
	for _, u := range a.Users {
		if u == "" {
			return bad("allow.users", "empty user ID")
		}
	}
	return nil
}

// AllowsIP reports whether ip is allow-listed.
func (a *Allow) AllowsIP(ip netip.Addr) bool {
	ip = ip.Unmap()
	for _, p := range a.prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// AllowsUser reports whether a user is allow-listed.
func (a *Allow) AllowsUser(u string) bool { return slices.Contains(a.Users, u) }

// AllowsASN reports whether an ASN is allow-listed.
func (a *Allow) AllowsASN(asn uint32) bool { return asn != 0 && slices.Contains(a.ASNs, asn) }

// Default returns the built-in rules: the defaults of each rule type.
func Default() *Set {
	t := func(r Rule) *Rule {
		if err := r.Validate(); err != nil {
			panic("built-in rule: " + err.Error())
		}
		return &r
	}
	return &Set{Source: "built-in", Rules: []*Rule{
		t(Rule{Name: "impossible-travel", Type: ImpossibleTravel, Severity: High, Action: ActionReauth, SameSessionAction: ActionRevokeSession}),
		t(Rule{Name: "shared-session", Type: SharedSession, Severity: High, Action: ActionRevokeSession}),
		t(Rule{Name: "session-burst", Type: RequestBurst, Scope: ScopeSession, Severity: Medium, Action: ActionAlert}),
		t(Rule{Name: "ip-burst", Type: RequestBurst, Scope: ScopeIP, Severity: Medium, Action: ActionAlert}),
		t(Rule{Name: "brute-force", Type: BruteForce, Severity: High, Action: ActionAlert}),
		t(Rule{Name: "credential-stuffing", Type: CredentialStuffing, Severity: High, Action: ActionAlert}),
		t(Rule{Name: "new-country", Type: NewCountry, Severity: Low, Action: ActionAlert}),
	}}
}
