package cli

import (
	"bytes"
	"errors"
	"io"
	"strings"
	"testing"
	"time"
)

func TestEnvFallbackAndPrecedence(t *testing.T) {
	env := map[string]string{"APP_TIMEOUT": "5m", "APP_NAME": "from-env"}
	fs := New("app", func(k string) string { return env[k] }, io.Discard)
	var d time.Duration
	var name, other string
	var n int
	fs.Duration(&d, "timeout", "APP_TIMEOUT", time.Second, "")
	fs.String(&name, "name", "APP_NAME", "default", "")
	fs.String(&other, "other", "", "plain", "")
	fs.Int(&n, "n", "APP_N", 3, "")
	if err := fs.Parse([]string{"-name", "from-flag"}); err != nil {
		t.Fatal(err)
	}
	if d != 5*time.Minute || name != "from-flag" || other != "plain" || n != 3 {
		t.Fatalf("timeout %s name %q other %q n %d", d, name, other, n)
	}
	if fs.Setting("timeout") != "APP_TIMEOUT (-timeout)" || fs.Setting("other") != "-other" {
		t.Fatal(fs.Setting("timeout"), fs.Setting("other"))
	}
}

func TestBadEnvNamesTheVariable(t *testing.T) {
	fs := New("app", func(k string) string { return map[string]string{"APP_N": "many"}[k] }, io.Discard)
	var n int
	fs.Int(&n, "n", "APP_N", 3, "")
	err := fs.Parse(nil)
	if err == nil || !strings.HasPrefix(err.Error(), `APP_N: invalid value "many"`) {
		t.Fatalf("got %v", err)
	}
}

func TestLogger(t *testing.T) {
	for _, c := range []struct{ level, format, want string }{
		{"loud", "json", "log level"}, {"info", "xml", "log format"},
	} {
		if _, err := Logger(io.Discard, c.level, c.format); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v", c, err)
		}
	}
	if _, err := Logger(io.Discard, "debug", "text"); err != nil {
		t.Fatal(err)
	}
}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	fs := New("app", func(string) string { return "" }, &out)
	fs.Version()
	if err := fs.Parse([]string{"-version"}); !errors.Is(err, ErrVersion) {
		t.Fatalf("got %v", err)
	}
	if !strings.HasPrefix(out.String(), "app ") || !strings.Contains(out.String(), "(revision ") {
		t.Fatalf("printed %q", out.String())
	}
	fs = New("app", func(string) string { return "" }, io.Discard)
	fs.Version()
	if err := fs.Parse(nil); err != nil {
		t.Fatal(err)
	}
}

func TestProblemsNameTheirSettings(t *testing.T) {
	fs := New("app", func(string) string { return "" }, io.Discard)
	var listen, other, level, format string
	fs.String(&listen, "listen", "APP_LISTEN", "localhost", "")
	fs.String(&other, "other", "", "", "")
	fs.Logging(&level, &format)
	if err := fs.Parse([]string{"-log-format", "text"}); err != nil {
		t.Fatal(err)
	}
	if level != "info" || format != "text" || fs.Setting("log-level") != "LOG_LEVEL (-log-level)" {
		t.Fatalf("level %q format %q setting %q", level, format, fs.Setting("log-level"))
	}
	p := fs.Problems()
	if p.Err() != nil {
		t.Fatal("no problems yet, got", p.Err())
	}
	p.Listen("listen", listen)
	p.Listen("listen", "127.0.0.1:8080") // a good address adds nothing
	p.Bad("other", errors.New("required"))
	p.Add(nil)
	p.Add(errors.New("NATS_URL (-nats-url): bad scheme"))
	p.Logging(level, format) // good values add nothing
	p.Logging("loud", "json")
	want := "APP_LISTEN (-listen): address localhost: missing port in address\n" +
		"-other: required\n" +
		"NATS_URL (-nats-url): bad scheme\n" +
		`log level "loud": want debug, info, warn or error`
	if got := p.Err(); got == nil || got.Error() != want {
		t.Fatalf("got\n%v\nwant\n%s", got, want)
	}
}
