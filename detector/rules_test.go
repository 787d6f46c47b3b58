package detector_test

import (
	"bytes"
	"encoding/json"
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/sessionmon/sessionmon/detector"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/geo"
	"github.com/sessionmon/sessionmon/geo/geotest"
	"github.com/sessionmon/sessionmon/rules"
)

var update = flag.Bool("update", false, "rewrite the expected.json files of rules/testdata")

// testGeo opens the test GeoIP databases built from geo/geodb/networks.csv.
func testGeo(t testing.TB) geo.Resolver {
	t.Helper()
	p := geotest.MustBuild(t)
	m, err := geo.Open(geo.Config{CityDB: p.City, ASNDB: p.ASN, AnonymousDB: p.Anonymous})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = m.Close() })
	return m
}

// TestRuleCases replays each case of rules/testdata: its rules.yaml over
// its events.jsonl must raise exactly the alerts of expected.json.
func TestRuleCases(t *testing.T) {
	res := testGeo(t)
	dirs, err := filepath.Glob("../rules/testdata/*/events.jsonl")
	if err != nil || len(dirs) == 0 {
		t.Fatalf("no cases: %v", err)
	}
	for _, evFile := range dirs {
		dir := filepath.Dir(evFile)
		t.Run(filepath.Base(dir), func(t *testing.T) {
			set, err := rules.Load(filepath.Join(dir, "rules.yaml"))
			if err != nil {
				t.Fatal(err)
			}
			in, err := os.Open(evFile)
			if err != nil {
				t.Fatal(err)
			}
			defer in.Close()
			var out bytes.Buffer
			if _, err := detector.Replay(detector.New(set, res), in, &out); err != nil {
				t.Fatal(err)
			}
			got := []events.Alert{}
			dec := json.NewDecoder(&out)
			for dec.More() {
				var a events.Alert
				if err := dec.Decode(&a); err != nil {
					t.Fatal(err)
				}
				got = append(got, a)
			}
			gotJSON, _ := json.MarshalIndent(got, "", "  ")
			gotJSON = append(gotJSON, '\n')
			golden := filepath.Join(dir, "expected.json")
			if *update {
				if err := os.WriteFile(golden, gotJSON, 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it, then review it)", err)
			}
			if !bytes.Equal(gotJSON, want) {
				t.Errorf("alerts differ from %s:\n%s", golden, gotJSON)
			}
		})
	}
}
