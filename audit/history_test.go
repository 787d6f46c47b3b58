package audit

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func sampleHistory() *History {
	at := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	return &History{
		UserID: "alice", To: at.Add(time.Hour), Generated: at.Add(time.Hour),
		Sessions: []SessionRecord{{
			SessionID: sid, App: "shop", Started: at, StartIP: "203.0.113.7", StartPlace: Place{"JP", "Tokyo"},
			FirstSeen: at, LastSeen: at.Add(time.Minute), Events: 3,
			Addresses: []Address{
				{IP: "203.0.113.7", Place: Place{"JP", "Tokyo"}, First: at, Last: at, Events: 2},
				{IP: "hmac:00ff", First: at.Add(time.Minute), Last: at.Add(time.Minute), Events: 1},
			},
			UserAgents: []string{"=HYPERLINK(\"http://x\")", "Firefox"},
			Ended:      at.Add(time.Minute), End: "session.terminated", Reason: "logout", Actor: "shop", Endings: 1,
		}, {
			SessionID: "07Zz" + sid[4:], FirstSeen: at, LastSeen: at, Events: 1, Addresses: []Address{}, UserAgents: []string{},
		}},
		AuthEvents: []Entry{},
	}
}

func TestWriteCSV(t *testing.T) {
	var b bytes.Buffer
	if err := WriteCSV(&b, sampleHistory()); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 3 || strings.Join(rows[0], ",") != strings.Join(CSVHeader, ",") {
		t.Fatalf("rows %q", rows)
	}
	col := func(row int, name string) string {
		for i, h := range CSVHeader {
			if h == name {
				return rows[row][i]
			}
		}
		t.Fatalf("no column %s", name)
		return ""
	}
	if col(1, "started") != "2026-11-22T10:00:00.000Z" || col(1, "end") != "session.terminated" || col(1, "end_reason") != "logout" ||
		col(1, "start_city") != "Tokyo" || col(1, "endings") != "1" {
		t.Fatalf("row %q", rows[1])
	}
	if got := col(1, "addresses"); got != "203.0.113.7 Tokyo, JP 2026-11-22T10:00:00.000Z..2026-11-22T10:00:00.000Z (2 events); hmac:00ff  2026-11-22T10:01:00.000Z..2026-11-22T10:01:00.000Z (1 events)" {
		t.Fatalf("addresses %q", got)
	}
	// A user agent that a spreadsheet would run is defused.
	if got := col(1, "user_agents"); !strings.HasPrefix(got, "'=HYPERLINK") {
		t.Fatalf("user agents %q", got)
	}
	if col(2, "started") != "" || col(2, "ended") != "" {
		t.Fatalf("a session without start or end: %q", rows[2])
	}
}

func TestWriteJSON(t *testing.T) {
	var b bytes.Buffer
	if err := WriteJSON(&b, sampleHistory()); err != nil {
		t.Fatal(err)
	}
	var back History
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if back.UserID != "alice" || len(back.Sessions) != 2 || back.Sessions[0].Addresses[1].IP != "hmac:00ff" || !back.Sessions[0].Ended.Equal(sampleHistory().Sessions[0].Ended) {
		t.Fatalf("%+v", back)
	}
	// Zero times are left out, not written as year 1.
	if strings.Contains(b.String(), "0001-01-01") {
		t.Fatalf("zero time in %s", b.String())
	}
}
