package console

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the console.
type Metrics struct {
	Logins    *prometheus.CounterVec // result: ok, bad_credentials, throttled, csrf, error
	Decisions *prometheus.CounterVec // action
	Refused   *prometheus.CounterVec // why: unauthenticated, unavailable, not_a_reviewer, role, cross_origin
}

// NewMetrics builds the console's metrics and registers them with reg when
// it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "sessionmon", "console"
	m := &Metrics{
		Logins: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "logins_total", Help: "Sign-in attempts to the review console, by result."}, []string{"result"}),
		Decisions: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "actions_total", Help: "Reviewers' decisions and session actions taken in the console, by action."}, []string{"action"}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "requests_refused_total", Help: "Console requests refused, by reason."}, []string{"reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.Logins, m.Decisions, m.Refused)
	}
	return m
}
