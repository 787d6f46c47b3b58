package httpapi

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics of the session API.
type Metrics struct {
	Requests         *prometheus.CounterVec
	RequestSeconds   *prometheus.HistogramVec
	Created          prometheus.Counter
	Validated        *prometheus.CounterVec
	ValidateSeconds  prometheus.Histogram
	AuthEvents       *prometheus.CounterVec
	SessionsEndedAPI *prometheus.CounterVec
}

// NewMetrics returns the API metrics, registered with reg when it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "http", Name: "requests_total",
			Help: "HTTP requests by route pattern and status code.",
		}, []string{"route", "code"}),
		RequestSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Namespace: "sessionmon", Subsystem: "http", Name: "request_duration_seconds",
			Help:    "HTTP request latency by route pattern.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}, []string{"route"}),
		Created: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "sessions", Name: "created_total",
			Help: "Sessions created.",
		}),
		Validated: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "sessions", Name: "validations_total",
			Help: "Session validations by result: ok, or the error code that refused it.",
		}, []string{"result"}),
		ValidateSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Namespace: "sessionmon", Subsystem: "sessions", Name: "validate_duration_seconds",
			Help:    "Time to validate a session, store round trip included.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		AuthEvents: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "auth", Name: "events_total",
			Help: "Login attempts reported by apps, by type.",
		}, []string{"type"}),
		SessionsEndedAPI: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "sessionmon", Subsystem: "sessions", Name: "ended_total",
			Help: "Sessions ended through the API, by operation.",
		}, []string{"op"}),
	}
	for _, r := range []string{"ok", "session_not_found", "session_expired", "session_revoked", "reauth_required",
		"csrf_mismatch", "forbidden", "invalid_request", "unavailable", "internal"} {
		m.Validated.WithLabelValues(r)
	}
	if reg != nil {
		reg.MustRegister(m.Requests, m.RequestSeconds, m.Created, m.Validated, m.ValidateSeconds, m.AuthEvents, m.SessionsEndedAPI)
	}
	return m
}
