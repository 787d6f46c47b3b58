package sessionsvc

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/sessionmon/sessionmon/internal/testenv"
)

// waitLogged waits until the service's log holds all of want.
func waitLogged(t *testing.T, s *service, want ...string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		out, missing := s.log.String(), ""
		for _, w := range want {
			if !strings.Contains(out, w) {
				missing = w
			}
		}
		if missing == "" {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the log lacks %q:\n%s", missing, out)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// checkRefused checks that a service refused by NATS keeps serving the API
// (the outbox holds the events), says why in its log, and shows NATS down
// in /readyz.
func checkRefused(t *testing.T, s *service, why string) {
	t.Helper()
	s.login(t, "bob")
	waitLogged(t, s, `"msg":"cannot connect to nats; retrying"`, why)
	code, out := s.call(t, "GET", "/readyz", "", nil)
	if code != 200 || out["memory"] != "ok" || out["nats"] == "CONNECTED" {
		t.Fatalf("readyz: %d %v", code, out)
	}
}

// A NATS server requiring TLS and client certificates: the service
// connects with the CA and its certificate (NATS_TLS_CA, NATS_TLS_CERT,
// NATS_TLS_KEY) and its events reach the stream; without its certificate
// it is refused.
func TestNATSWithTLSClientCertificates(t *testing.T) {
	p := testenv.NewPKI(t)
	tc, err := server.GenTLSConfig(&server.TLSConfigOpts{CertFile: p.ServerCert, KeyFile: p.ServerKey, CaFile: p.CA, Verify: true})
	if err != nil {
		t.Fatal(err)
	}
	opts := testenv.NATSOptions(t.TempDir())
	opts.TLS, opts.TLSVerify, opts.TLSConfig, opts.TLSTimeout = true, true, tc, 2
	ns := testenv.StartNATS(t, opts)
	nc, err := nats.Connect(ns.ClientURL(), nats.RootCAs(p.CA), nats.ClientCert(p.ClientCert, p.ClientKey))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	s := start(t, ns.ClientURL(), "unused", "-store", "memory", "-nats-tls-ca", p.CA, "-nats-tls-cert", p.ClientCert, "-nats-tls-key", p.ClientKey)
	s.login(t, "alice")
	waitStream(t, nc, 1)
	code, out := s.call(t, "GET", "/readyz", "", nil)
	if code != 200 || out["nats"] != "CONNECTED" {
		t.Fatalf("readyz: %d %v", code, out)
	}
	waitLogged(t, s, `"msg":"connecting to nats"`, `"tls":"client-cert"`, `"msg":"nats connected"`)

	checkRefused(t, start(t, ns.ClientURL(), "unused", "-store", "memory", "-nats-tls-ca", p.CA), "tls")
}

// A NATS server with a user and password: the service connects with them
// in NATS_URL, which it never logs; without them it is refused.
func TestNATSWithUserAndPassword(t *testing.T) {
	const user, password = "sessionsvc", "nats-pa55word-0123456789"
	opts := testenv.NATSOptions(t.TempDir())
	opts.Username, opts.Password = user, password
	ns := testenv.StartNATS(t, opts)
	host := strings.TrimPrefix(ns.ClientURL(), "nats://")
	nc, err := nats.Connect(ns.ClientURL(), nats.UserInfo(user, password))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()

	s := start(t, "nats://"+user+":"+password+"@"+host, "unused", "-store", "memory")
	s.login(t, "alice")
	waitStream(t, nc, 1)
	waitLogged(t, s, `"msg":"nats connected"`, `"url":"nats://`+user+`:xxxxx@`+host+`"`, `"auth":"password"`)
	if strings.Contains(s.log.String(), password) {
		t.Fatalf("the password is in the log:\n%s", s.log.String())
	}

	checkRefused(t, start(t, "nats://"+host, "unused", "-store", "memory"), "Authorization Violation")
}
