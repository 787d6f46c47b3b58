package console

import (
	"fmt"
	"html/template"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/sessionmon/sessionmon/alerter"
	"github.com/sessionmon/sessionmon/events"
)

// travelView is the evidence of an impossible-travel alert: where the user
// was, then where, how far apart, how fast, and how long between.
type travelView struct {
	From, To            events.EventRef
	DistanceKm          float64
	EffectiveDistanceKm float64
	SpeedKmh            float64
	ElapsedSeconds      float64
	SameSession         bool
}

// travel returns the travel evidence of an alert, or nil.
func travel(a events.Alert) *travelView {
	ev := a.Evidence
	if a.RuleType != "impossible_travel" || len(ev.Events) < 2 {
		return nil
	}
	from, to := ev.Events[0], ev.Events[len(ev.Events)-1]
	if to.Time.Before(from.Time) {
		from, to = to, from
	}
	return &travelView{From: from, To: to, DistanceKm: ev.DistanceKm, EffectiveDistanceKm: ev.EffectiveDistanceKm,
		SpeedKmh: ev.SpeedKmh, ElapsedSeconds: ev.ElapsedSeconds, SameSession: ev.SameSession}
}

var decisionLabels = map[alerter.Decision]string{
	alerter.Acknowledge:       "Acknowledge",
	alerter.Resolve:           "Resolve",
	alerter.MarkFalsePositive: "False positive",
	alerter.Reopen:            "Reopen",
}

var funcs = template.FuncMap{
	"ts": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05 UTC")
	},
	"iso": func(t time.Time) string { return t.UTC().Format(time.RFC3339) },
	"dur": func(sec float64) string { return humanDuration(time.Duration(sec * float64(time.Second))) },
	"since": func(a, b time.Time) string {
		return humanDuration(b.Sub(a))
	},
	"km":    func(f float64) string { return thousands(int64(math.Round(f))) },
	"label": func(s any) string { return strings.ReplaceAll(fmt.Sprint(s), "_", " ") },
	"decisionLabel": func(d alerter.Decision) string {
		if l, ok := decisionLabels[d]; ok {
			return l
		}
		return string(d)
	},
	"place": func(e events.EventRef) string {
		switch {
		case e.City != "" && e.Country != "":
			return e.City + ", " + e.Country
		case e.Country != "":
			return e.Country
		}
		return "unknown place"
	},
	"coord": func(e events.EventRef) string {
		if e.Lat == 0 && e.Lon == 0 {
			return ""
		}
		return fmt.Sprintf("%.4f, %.4f", e.Lat, e.Lon)
	},
	"short": func(s string) string {
		if len(s) <= 12 {
			return s
		}
		return s[:12] + "…"
	},
	"join": func(xs []string) string { return strings.Join(xs, ", ") },
	"failedDeliveries": func(inc *alerter.Incident) int {
		n := 0
		for _, d := range inc.Deliveries {
			if d.Status == alerter.DeliveryFailed {
				n++
			}
		}
		return n
	},
	"isDecision": func(a string) bool { return alerter.Decision(a).Valid() },
}

func humanDuration(d time.Duration) string {
	if d < 0 {
		d = -d
	}
	switch {
	case d < time.Minute:
		return fmt.Sprintf("%d s", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%d min %d s", int(d.Minutes()), int(d.Seconds())%60)
	case d < 48*time.Hour:
		return fmt.Sprintf("%d h %d min", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%d days %d h", int(d.Hours())/24, int(d.Hours())%24)
}

func thousands(n int64) string {
	s := strconv.FormatInt(n, 10)
	neg := strings.HasPrefix(s, "-")
	s = strings.TrimPrefix(s, "-")
	var b strings.Builder
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	if neg {
		return "-" + b.String()
	}
	return b.String()
}
