package alerter

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// The alerter's configuration file (YAML) holds what does not fit a flag:
// the console's reviewer accounts, the notifiers, the routes from severity
// to notifiers, and the retry schedule. Secrets are best given by the name
// of an environment variable (secret_env, url_env) rather than written in
// the file:
//
//	reviewers:
//	  - name: alice
//	    role: responder          # or viewer (read only); default responder
//	    password_hash: $argon2id$v=19$m=65536,t=3,p=4$...   # alerter hash-password
//	notifiers:
//	  - name: soc
//	    type: webhook            # JSON, signed with HMAC-SHA256
//	    url: https://soc.example.com/hooks/sessionmon
//	    secret_env: SOC_WEBHOOK_SECRET
//	  - name: chat
//	    type: slack              # a Slack-compatible incoming webhook
//	    url_env: SLACK_WEBHOOK_URL
//	routes:                      # severity (or default) -> notifiers
//	  critical: [soc, chat]
//	  high: [soc, chat]
//	  medium: [chat]
//	  default: []
//	retry: {attempts: 8, initial: 1s, max: 1m}
type FileConfig struct {
	Reviewers []ReviewerSpec
	Notifiers []NotifierSpec
	Routes    map[string][]string
	Retry     Retry
}

// Reviewer roles.
const (
	RoleResponder = "responder" // may decide and act on sessions
	RoleViewer    = "viewer"    // may look
)

// ReviewerSpec is a console account as written in the file; the console
// checks the hash.
type ReviewerSpec struct {
	Name         string
	Role         string
	PasswordHash string
	// File and Line locate it, for the console's errors.
	File string
	Line int
}

// Notifier types.
const (
	TypeWebhook = "webhook"
	TypeSlack   = "slack"
)

// NotifierSpec is a notifier as configured, with its secrets resolved.
type NotifierSpec struct {
	Name string
	Type string
	URL  *url.URL
	// Secret is the webhook's HMAC key.
	Secret []byte
	Line   int
}

// ConfigError is a problem in the configuration file.
type ConfigError struct {
	File  string
	Line  int
	Field string
	Msg   string
}

func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	if e.Field != "" {
		fmt.Fprintf(&b, ": %s", e.Field)
	}
	fmt.Fprintf(&b, ": %s", e.Msg)
	return b.String()
}

// MaxConfigSize bounds the configuration file.
const MaxConfigSize = 1 << 20

// MinSecretLen is the shortest webhook signing secret accepted.
const MinSecretLen = 24

type duration time.Duration

func (d *duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		return fmt.Errorf("line %d: %q is not a duration such as 500ms, 1s or 1m", n.Line, n.Value)
	}
	*d = duration(v)
	return nil
}

type (
	fileYAML struct {
		Reviewers []reviewerYAML       `yaml:"reviewers"`
		Notifiers []notifierYAML       `yaml:"notifiers"`
		Routes    map[string][]string  `yaml:"routes"`
		Retry     *retryYAML           `yaml:"retry"`
		Extra     map[string]yaml.Node `yaml:",inline"`
	}
	reviewerYAML struct {
		Name         string `yaml:"name"`
		Role         string `yaml:"role"`
		PasswordHash string `yaml:"password_hash"`
	}
	notifierYAML struct {
		Name      string `yaml:"name"`
		Type      string `yaml:"type"`
		URL       string `yaml:"url"`
		URLEnv    string `yaml:"url_env"`
		Secret    string `yaml:"secret"`
		SecretEnv string `yaml:"secret_env"`
		// AllowHTTP permits a plain http:// URL to a host other than
		// loopback (e.g. a receiver inside the cluster).
		AllowHTTP bool `yaml:"allow_http"`
	}
	retryYAML struct {
		Attempts int      `yaml:"attempts"`
		Initial  duration `yaml:"initial"`
		Max      duration `yaml:"max"`
	}
	// nodesYAML is the same file as nodes, for the lines of errors.
	nodesYAML struct {
		Reviewers []yaml.Node `yaml:"reviewers"`
		Notifiers []yaml.Node `yaml:"notifiers"`
		Routes    yaml.Node   `yaml:"routes"`
		Retry     yaml.Node   `yaml:"retry"`
	}
)

var (
	reviewerName = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	notifierName = regexp.MustCompile(`^[a-z0-9][a-z0-9_-]{0,31}$`)
	envName      = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]{0,127}$`)
)

// ParseConfig reads and checks the configuration file; name is used in
// errors, getenv resolves url_env and secret_env. Every error names the
// file, line and field.
func ParseConfig(name string, data []byte, getenv func(string) string) (*FileConfig, error) {
	if len(data) > MaxConfigSize {
		return nil, &ConfigError{File: name, Msg: fmt.Sprintf("larger than %d bytes", MaxConfigSize)}
	}
	var f fileYAML
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&f); err != nil {
		return nil, yamlError(name, err)
	}
	var ns nodesYAML
	if err := yaml.Unmarshal(data, &ns); err != nil || len(ns.Reviewers) != len(f.Reviewers) || len(ns.Notifiers) != len(f.Notifiers) {
		return nil, &ConfigError{File: name, Msg: "cannot read the positions of the entries"}
	}
	for k, n := range f.Extra {
		return nil, &ConfigError{File: name, Line: n.Line, Field: k, Msg: "unknown setting (want reviewers, notifiers, routes, retry)"}
	}
	errs := &configErrors{file: name}
	out := &FileConfig{Routes: map[string][]string{}, Retry: DefaultRetry()}

	seen := map[string]int{}
	for i, r := range f.Reviewers {
		n := &ns.Reviewers[i]
		line := func(field string) int { return fieldLine(n, field) }
		field := fmt.Sprintf("reviewers[%d]", i)
		if r.Name != "" {
			field = fmt.Sprintf("reviewer %q", r.Name)
		}
		switch {
		case !reviewerName.MatchString(r.Name):
			errs.add(line("name"), field+": name", "must be 1 to 64 of a-z, 0-9, '.', '_', '-' (starting with a letter or digit), got %q", r.Name)
		case seen[r.Name] > 0:
			errs.add(line("name"), field+": name", "used twice (first on line %d)", seen[r.Name])
		default:
			seen[r.Name] = n.Line
		}
		if r.Role == "" {
			r.Role = RoleResponder
		}
		if r.Role != RoleResponder && r.Role != RoleViewer {
			errs.add(line("role"), field+": role", "must be %s or %s, got %q", RoleResponder, RoleViewer, r.Role)
		}
		if r.PasswordHash == "" {
			errs.add(line("password_hash"), field+": password_hash", "required (make one with: alerter hash-password)")
		}
		out.Reviewers = append(out.Reviewers, ReviewerSpec{Name: r.Name, Role: r.Role, PasswordHash: r.PasswordHash, File: name, Line: n.Line})
	}

	names := map[string]int{}
	for i, nf := range f.Notifiers {
		n := &ns.Notifiers[i]
		line := func(field string) int { return fieldLine(n, field) }
		field := fmt.Sprintf("notifiers[%d]", i)
		if nf.Name != "" {
			field = fmt.Sprintf("notifier %q", nf.Name)
		}
		switch {
		case !notifierName.MatchString(nf.Name):
			errs.add(line("name"), field+": name", "must be 1 to 32 of a-z, 0-9, '_', '-' (starting with a letter or digit), got %q", nf.Name)
		case names[nf.Name] > 0:
			errs.add(line("name"), field+": name", "used twice (first on line %d)", names[nf.Name])
		default:
			names[nf.Name] = n.Line
		}
		spec := NotifierSpec{Name: nf.Name, Type: nf.Type, Line: n.Line}
		if nf.Type != TypeWebhook && nf.Type != TypeSlack {
			errs.add(line("type"), field+": type", "must be %s or %s, got %q", TypeWebhook, TypeSlack, nf.Type)
		}
		raw, src, ok := valueOrEnv(errs, getenv, line, field, "url", nf.URL, "url_env", nf.URLEnv)
		if ok && raw == "" {
			errs.add(line(src), field+": "+src, "required")
		} else if ok {
			u, err := checkURL(raw, nf.AllowHTTP)
			if err != nil {
				// Never echo the URL: a Slack URL is a secret.
				errs.add(line(src), field+": "+src, "%v", err)
			}
			spec.URL = u
		}
		secret, src, ok := valueOrEnv(errs, getenv, line, field, "secret", nf.Secret, "secret_env", nf.SecretEnv)
		switch {
		case !ok:
		case nf.Type == TypeSlack && (nf.Secret != "" || nf.SecretEnv != ""):
			errs.add(line(src), field+": "+src, "a slack notifier has no signing secret (its URL is the secret)")
		case nf.Type == TypeWebhook && secret == "":
			errs.add(line(src), field+": secret_env", "required: the webhook signs each request with HMAC-SHA256 of this secret")
		case nf.Type == TypeWebhook && len(secret) < MinSecretLen:
			errs.add(line(src), field+": "+src, "the secret must be at least %d bytes, got %d", MinSecretLen, len(secret))
		case nf.Type == TypeWebhook:
			spec.Secret = []byte(secret)
		}
		out.Notifiers = append(out.Notifiers, spec)
	}

	for sev, list := range f.Routes {
		line := keyLine(&ns.Routes, sev)
		if sev != DefaultRoute && SeverityRank(sev) == 0 {
			errs.add(line, "routes: "+sev, "not a severity (want low, medium, high, critical or default)")
			continue
		}
		var route []string
		for _, nm := range list {
			switch {
			case names[nm] == 0:
				errs.add(line, "routes: "+sev, "no notifier named %q", nm)
			case slices.Contains(route, nm):
				errs.add(line, "routes: "+sev, "%q listed twice", nm)
			default:
				route = append(route, nm)
			}
		}
		out.Routes[sev] = route
	}

	if f.Retry != nil {
		r := Retry{Attempts: f.Retry.Attempts, Initial: time.Duration(f.Retry.Initial), Max: time.Duration(f.Retry.Max)}
		if err := r.Validate(); err != nil {
			errs.add(ns.Retry.Line, "retry", "%v", err)
		}
		out.Retry = r
	}
	if err := errs.err(); err != nil {
		return nil, err
	}
	return out, nil
}

// valueOrEnv resolves a setting given either literally or by the name of
// an environment variable; exactly one may be set. ok is false when the
// entry is wrong (already reported).
func valueOrEnv(errs *configErrors, getenv func(string) string, line func(string) int, field, lit, litVal, env, envVal string) (v, src string, ok bool) {
	switch {
	case litVal != "" && envVal != "":
		errs.add(line(env), field+": "+env, "give %s or %s, not both", lit, env)
		return "", env, false
	case envVal != "":
		if !envName.MatchString(envVal) {
			errs.add(line(env), field+": "+env, "%q is not an environment variable name", envVal)
			return "", env, false
		}
		v := getenv(envVal)
		if v == "" {
			errs.add(line(env), field+": "+env, "environment variable %s is empty", envVal)
			return "", env, false
		}
		return v, env, true
	}
	return litVal, lit, true
}

// checkURL accepts https URLs, and http ones to loopback or when allowed.
func checkURL(raw string, allowHTTP bool) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, errors.New("not a URL")
	}
	if u.Host == "" || u.Fragment != "" || u.User != nil {
		return nil, errors.New("want http(s)://host[:port]/path, without user info or fragment")
	}
	switch u.Scheme {
	case "https":
	case "http":
		if !allowHTTP && !isLoopback(u.Hostname()) {
			return nil, errors.New("plain http only to loopback, or with allow_http: true")
		}
	default:
		return nil, fmt.Errorf("scheme %q: want https (or http)", u.Scheme)
	}
	return u, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// fieldLine is the line of field in a mapping node, or the node's own.
func fieldLine(n *yaml.Node, field string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == field {
			return n.Content[i].Line
		}
	}
	return n.Line
}

func keyLine(n *yaml.Node, key string) int {
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == key {
			return n.Content[i].Line
		}
	}
	return n.Line
}

type configErrors struct {
	file string
	list []error
}

func (c *configErrors) add(line int, field, format string, args ...any) {
	c.list = append(c.list, &ConfigError{File: c.file, Line: line, Field: field, Msg: fmt.Sprintf(format, args...)})
}

func (c *configErrors) err() error {
	slices.SortStableFunc(c.list, func(a, b error) int {
		var x, y *ConfigError
		errors.As(a, &x)
		errors.As(b, &y)
		return x.Line - y.Line
	})
	return errors.Join(c.list...)
}

func yamlError(file string, err error) error {
	var te *yaml.TypeError
	if errors.As(err, &te) && len(te.Errors) > 0 {
		line, msg := cutLine(te.Errors[0])
		msg = strings.NewReplacer("in type alerter.reviewerYAML", "in a reviewer",
			"in type alerter.notifierYAML", "in a notifier", "in type alerter.retryYAML", "in retry").Replace(msg)
		return &ConfigError{File: file, Line: line, Msg: msg}
	}
	if errors.Is(err, io.EOF) {
		return &ConfigError{File: file, Msg: "empty file"}
	}
	line, msg := cutLine(strings.TrimPrefix(err.Error(), "yaml: "))
	return &ConfigError{File: file, Line: line, Msg: msg}
}

func cutLine(s string) (int, string) {
	var n int
	if k, err := fmt.Sscanf(s, "line %d:", &n); err != nil || k != 1 {
		return 0, s
	}
	_, rest, _ := strings.Cut(s, ": ")
	return n, rest
}
