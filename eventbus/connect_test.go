package eventbus_test

import (
	"bufio"
	"encoding/json"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/jwt/v2"
	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nkeys"

	"github.com/sessionmon/sessionmon/eventbus"
	"github.com/sessionmon/sessionmon/internal/testenv"
)

// startServer starts an in-process NATS server (no JetStream) with opts
// completed; it is shut down when the test ends.
func startServer(t *testing.T, opts *server.Options) *server.Server {
	t.Helper()
	opts.Host, opts.Port, opts.NoLog, opts.NoSigs = "127.0.0.1", -1, true, true
	return testenv.StartNATS(t, opts)
}

// tlsServer requires TLS and a client certificate signed by the test CA.
func tlsServer(t *testing.T, p testenv.PKI) *server.Server {
	t.Helper()
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.ServerCert, KeyFile: p.ServerKey, CaFile: p.CA, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	return startServer(t, &server.Options{TLS: true, TLSVerify: true, TLSConfig: tc, TLSTimeout: 2})
}

// connect connects with c and returns the connection and the log.
func connect(t *testing.T, c eventbus.ConnConfig) (*nats.Conn, *testenv.LogBuffer) {
	t.Helper()
	log := &testenv.LogBuffer{}
	nc, err := eventbus.Connect(c, "connect-test", slog.New(slog.NewJSONHandler(log, nil)))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc, log
}

// waitConnected waits until nc is connected and answers a round trip.
func waitConnected(t *testing.T, nc *nats.Conn, log *testenv.LogBuffer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !nc.IsConnected() {
		if time.Now().After(deadline) {
			t.Fatalf("not connected (%s):\n%s", nc.Status(), log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if _, err := nc.RTT(); err != nil {
		t.Fatal(err)
	}
}

// waitRefused waits for the log line of a failed connection holding want,
// and checks that the connection is not up and still retrying.
func waitRefused(t *testing.T, nc *nats.Conn, log *testenv.LogBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !logged(log, "cannot connect to nats; retrying", want) {
		if time.Now().After(deadline) {
			t.Fatalf("no failure logged with %q:\n%s", want, log.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(1200 * time.Millisecond) // two more attempts
	if st := nc.Status(); st == nats.CONNECTED || st == nats.CLOSED {
		t.Fatalf("status %s: want refused and retrying\n%s", st, log.String())
	}
}

// logged reports whether the JSON log holds a line with message msg whose
// error contains want.
func logged(log *testenv.LogBuffer, msg, want string) bool {
	sc := bufio.NewScanner(strings.NewReader(log.String()))
	for sc.Scan() {
		var line struct{ Msg, Err string }
		if json.Unmarshal(sc.Bytes(), &line) == nil && line.Msg == msg && strings.Contains(line.Err, want) {
			return true
		}
	}
	return false
}

// A server that requires TLS and verifies clients: the CA and a client
// certificate connect; without the certificate, or without the CA, the
// connection is refused with the reason in the log, and retried.
func TestConnectTLSWithClientCertificate(t *testing.T) {
	p := testenv.NewPKI(t)
	s := tlsServer(t, p)
	url := s.ClientURL()

	nc, log := connect(t, eventbus.ConnConfig{URL: url, TLSCA: p.CA, TLSCert: p.ClientCert, TLSKey: p.ClientKey})
	waitConnected(t, nc, log)
	if !nc.TLSRequired() {
		t.Fatal("connected without TLS")
	}
	if !logged(log, "connecting to nats", "") || !strings.Contains(log.String(), `"tls":"client-cert"`) {
		t.Fatalf("the start of the connection is not logged with its TLS mode:\n%s", log.String())
	}

	t.Run("without a client certificate", func(t *testing.T) {
		nc, log := connect(t, eventbus.ConnConfig{URL: url, TLSCA: p.CA})
		// "remote error: tls: certificate required", or the server
		// closing the connection after the handshake, depending on timing.
		waitRefused(t, nc, log, "tls")
	})
	t.Run("without the CA", func(t *testing.T) {
		nc, log := connect(t, eventbus.ConnConfig{URL: url, TLSCert: p.ClientCert, TLSKey: p.ClientKey})
		waitRefused(t, nc, log, "x509: certificate signed by unknown authority")
	})
	t.Run("nothing", func(t *testing.T) {
		nc, log := connect(t, eventbus.ConnConfig{URL: url})
		waitRefused(t, nc, log, "")
	})
}

// A server with a user and password, and one with a token: the URL's
// credentials connect, and are not logged; without them, or with wrong
// ones, the connection is refused (and retried: credentials may be fixed
// meanwhile).
func TestConnectUserPasswordAndToken(t *testing.T) {
	const user, password, token = "sessionmon", "pa55-w0rd-in-the-url", "t0ken-in-the-url-0123456789"
	s := startServer(t, &server.Options{Username: user, Password: password})
	host := strings.TrimPrefix(s.ClientURL(), "nats://")

	nc, log := connect(t, eventbus.ConnConfig{URL: "nats://" + user + ":" + password + "@" + host})
	waitConnected(t, nc, log)
	// A reconnection logs the URL too.
	if err := nc.ForceReconnect(); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(log.String(), "nats reconnected") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if out := log.String(); strings.Contains(out, password) || !strings.Contains(out, user+":xxxxx@"+host) || !strings.Contains(out, "nats reconnected") {
		t.Fatalf("the log shows the password, or not the redacted URL:\n%s", out)
	}

	for name, url := range map[string]string{"no credentials": "nats://" + host, "a wrong password": "nats://" + user + ":wrong@" + host} {
		t.Run(name, func(t *testing.T) {
			nc, log := connect(t, eventbus.ConnConfig{URL: url})
			waitRefused(t, nc, log, "Authorization Violation")
		})
	}

	ts := startServer(t, &server.Options{Authorization: token})
	thost := strings.TrimPrefix(ts.ClientURL(), "nats://")
	nc, log = connect(t, eventbus.ConnConfig{URL: "nats://" + token + "@" + thost})
	waitConnected(t, nc, log)
	if out := log.String(); strings.Contains(out, token) || !strings.Contains(out, "nats://xxxxx@"+thost) {
		t.Fatalf("the log shows the token, or not the redacted URL:\n%s", out)
	}
}

// An NKey seed file, and a credentials file (user JWT and seed) against a
// server trusting an operator.
func TestConnectNKeyAndCredentials(t *testing.T) {
	dir := t.TempDir()
	ukp, _ := nkeys.CreateUser()
	upub, _ := ukp.PublicKey()
	useed, _ := ukp.Seed()
	seedFile := filepath.Join(dir, "user.nk")
	if err := os.WriteFile(seedFile, useed, 0o600); err != nil {
		t.Fatal(err)
	}
	s := startServer(t, &server.Options{Nkeys: []*server.NkeyUser{{Nkey: upub}}})
	nc, log := connect(t, eventbus.ConnConfig{URL: s.ClientURL(), NKeySeed: seedFile})
	waitConnected(t, nc, log)
	nc, log = connect(t, eventbus.ConnConfig{URL: s.ClientURL()})
	waitRefused(t, nc, log, "Authorization Violation")

	// Operator mode: operator, account, user.
	okp, _ := nkeys.CreateOperator()
	opub, _ := okp.PublicKey()
	oc := jwt.NewOperatorClaims(opub)
	if _, err := oc.Encode(okp); err != nil {
		t.Fatal(err)
	}
	akp, _ := nkeys.CreateAccount()
	apub, _ := akp.PublicKey()
	ajwt, err := jwt.NewAccountClaims(apub).Encode(okp)
	if err != nil {
		t.Fatal(err)
	}
	ujwt, err := jwt.NewUserClaims(upub).Encode(akp)
	if err != nil {
		t.Fatal(err)
	}
	creds, err := jwt.FormatUserConfig(ujwt, useed)
	if err != nil {
		t.Fatal(err)
	}
	credsFile := filepath.Join(dir, "user.creds")
	if err := os.WriteFile(credsFile, creds, 0o600); err != nil {
		t.Fatal(err)
	}
	res := &server.MemAccResolver{}
	if err := res.Store(apub, ajwt); err != nil {
		t.Fatal(err)
	}
	os := startServer(t, &server.Options{TrustedOperators: []*jwt.OperatorClaims{oc}, AccountResolver: res})
	nc, log = connect(t, eventbus.ConnConfig{URL: os.ClientURL(), Creds: credsFile})
	waitConnected(t, nc, log)
	if strings.Contains(log.String(), string(useed)) {
		t.Fatal("the seed is in the log")
	}
}

// Check reports every bad setting, naming it, before anything connects;
// Connect refuses the same.
func TestConnConfigCheck(t *testing.T) {
	p := testenv.NewPKI(t)
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "not.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	const url = "nats://127.0.0.1:4222"
	cases := []struct {
		c    eventbus.ConnConfig
		want []string
	}{
		{eventbus.ConnConfig{}, []string{"NATS_URL (-nats-url): required"}},
		{eventbus.ConnConfig{URL: "nats://user:s3cret@[::1"}, []string{"NATS_URL (-nats-url): not a URL"}},
		{eventbus.ConnConfig{URL: "http://127.0.0.1:4222"}, []string{`NATS_URL (-nats-url): scheme "http"`}},
		{eventbus.ConnConfig{URL: url, TLSCert: p.ClientCert}, []string{"NATS_TLS_CERT (-nats-tls-cert): give both the client certificate and its key (NATS_TLS_KEY (-nats-tls-key)), or neither"}},
		{eventbus.ConnConfig{URL: url, TLSKey: p.ClientKey}, []string{"NATS_TLS_KEY (-nats-tls-key): give both the client certificate and its key (NATS_TLS_CERT (-nats-tls-cert))"}},
		{eventbus.ConnConfig{URL: url, TLSCert: p.ClientCert, TLSKey: filepath.Join(dir, "missing.key")}, []string{"NATS_TLS_KEY (-nats-tls-key): stat " + dir}},
		{eventbus.ConnConfig{URL: url, TLSCert: p.ClientCert, TLSKey: p.ServerKey}, []string{"NATS_TLS_CERT (-nats-tls-cert): tls: private key does not match public key"}},
		{eventbus.ConnConfig{URL: url, TLSCA: filepath.Join(dir, "missing.crt")}, []string{"NATS_TLS_CA (-nats-tls-ca): open " + dir}},
		{eventbus.ConnConfig{URL: url, TLSCA: notPEM}, []string{"NATS_TLS_CA (-nats-tls-ca): " + notPEM + " holds no PEM certificate"}},
		{eventbus.ConnConfig{URL: url, Creds: notPEM}, []string{"NATS_CREDS (-nats-creds): "}},
		{eventbus.ConnConfig{URL: url, Creds: filepath.Join(dir, "missing.creds")}, []string{"NATS_CREDS (-nats-creds): "}},
		{eventbus.ConnConfig{URL: url, NKeySeed: notPEM}, []string{"NATS_NKEY_SEED (-nats-nkey-seed): "}},
		{eventbus.ConnConfig{URL: url, Creds: notPEM, NKeySeed: notPEM}, []string{"NATS_CREDS (-nats-creds): give the credentials file or NATS_NKEY_SEED (-nats-nkey-seed), not both"}},
		{eventbus.ConnConfig{URL: "nats://u:p@127.0.0.1:4222", NKeySeed: notPEM}, []string{"NATS_URL (-nats-url): a user or token in the URL, and NATS_CREDS"}},
		// Every problem at once.
		{eventbus.ConnConfig{URL: url, TLSCA: notPEM, TLSCert: p.ClientCert}, []string{"NATS_TLS_CA", "NATS_TLS_CERT"}},
	}
	for _, c := range cases {
		err := c.c.Check()
		for _, w := range c.want {
			if err == nil || !strings.Contains(err.Error(), w) {
				t.Errorf("%+v: got %v, want %q", c.c, err, w)
			}
		}
		if err != nil && strings.Contains(err.Error(), "s3cret") {
			t.Errorf("the error shows the password: %v", err)
		}
		if _, cerr := eventbus.Connect(c.c, "check-test", slog.New(slog.DiscardHandler)); cerr == nil || err == nil || cerr.Error() != err.Error() {
			t.Errorf("%+v: Connect: %v, Check: %v", c.c, cerr, err)
		}
	}
	good := eventbus.ConnConfig{URL: "nats://a:4222, tls://b:4222", TLSCA: p.CA, TLSCert: p.ClientCert, TLSKey: p.ClientKey}
	if err := good.Check(); err != nil {
		t.Fatal(err)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"nats://127.0.0.1:4222":                   "nats://127.0.0.1:4222",
		"nats://user:secret@nats:4222":            "nats://user:xxxxx@nats:4222",
		"nats://s3cret-token@nats:4222":           "nats://xxxxx@nats:4222",
		"tls://u:p@a:4222,nats://b:4222":          "tls://u:xxxxx@a:4222,nats://b:4222",
		"u:p@host:4222":                           "nats://u:xxxxx@host:4222",
		"nats://u:p@[::1":                         "(unparsable URL)",
		"nats://a:4222, nats://tok@b:4222 ":       "nats://a:4222,nats://xxxxx@b:4222",
		"wss://user:pass%40word@example.com:443/": "wss://user:xxxxx@example.com:443/",
	} {
		if got := eventbus.RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}
