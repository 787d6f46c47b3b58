package alerter

import "github.com/prometheus/client_golang/prometheus"

// Metrics of the alerter. The consumer's lag is eventbus.LagCollector's
// (sessionmon_consumer_pending_messages{stream="ALERTS",consumer="alerter"}). Label values are bounded: severities are the four
// known ones or "other", states the four states, notifiers those in the
// configuration, actions the decisions and session actions.
type Metrics struct {
	AlertsReceived      *prometheus.CounterVec // severity
	AlertsDuplicate     prometheus.Counter
	AlertsInvalid       prometheus.Counter
	IncidentsOpened     *prometheus.CounterVec // severity
	Incidents           *prometheus.GaugeVec   // severity, state
	NotificationsSent   *prometheus.CounterVec // notifier
	NotificationsFailed *prometheus.CounterVec // notifier
	NotificationTries   *prometheus.CounterVec // notifier, result
	NotificationSeconds *prometheus.HistogramVec
	ActionsPublished    *prometheus.CounterVec // action
	ActionPublishErrors prometheus.Counter
	Enforcements        *prometheus.CounterVec // result
}

// NewMetrics builds the alerter's metrics and registers them with reg when
// it is not nil.
func NewMetrics(reg prometheus.Registerer) *Metrics {
	const ns, sub = "sessionmon", "alerter"
	m := &Metrics{
		AlertsReceived: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_received_total", Help: "Alerts consumed from the ALERTS stream, by severity."}, []string{"severity"}),
		AlertsDuplicate: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_duplicate_total", Help: "Alerts received again (redelivered) and ignored."}),
		AlertsInvalid: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "alerts_invalid_total", Help: "Messages that did not decode as alerts, dead-lettered."}),
		IncidentsOpened: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "incidents_opened_total", Help: "Incidents opened (alerts not grouped into an active incident), by severity."}, []string{"severity"}),
		Incidents: prometheus.NewGaugeVec(prometheus.GaugeOpts{Namespace: ns, Subsystem: sub,
			Name: "incidents", Help: "Incidents kept, by severity and state."}, []string{"severity", "state"}),
		NotificationsSent: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "notifications_sent_total", Help: "Notifications delivered, by notifier."}, []string{"notifier"}),
		NotificationsFailed: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "notifications_failed_total", Help: "Notifications given up on (refused, or retries exhausted), by notifier."}, []string{"notifier"}),
		NotificationTries: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "notification_attempts_total", Help: "Notification attempts, by notifier and result (ok, retry, refused)."}, []string{"notifier", "result"}),
		NotificationSeconds: prometheus.NewHistogramVec(prometheus.HistogramOpts{Namespace: ns, Subsystem: sub,
			Name: "notification_attempt_duration_seconds", Help: "Duration of notification attempts.",
			Buckets: []float64{.01, .05, .1, .25, .5, 1, 2.5, 5, 10, 30}}, []string{"notifier"}),
		ActionsPublished: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "actions_published_total", Help: "Reviewers' actions published for the audit log, by action."}, []string{"action"}),
		ActionPublishErrors: prometheus.NewCounter(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "action_publish_errors_total", Help: "Failed publications of reviewers' actions (retried)."}),
		Enforcements: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: ns, Subsystem: sub,
			Name: "enforcements_total", Help: "Outcomes of the detector's actions recorded on incidents, by result."}, []string{"result"}),
	}
	if reg != nil {
		reg.MustRegister(m.AlertsReceived, m.AlertsDuplicate, m.AlertsInvalid, m.IncidentsOpened, m.Incidents,
			m.NotificationsSent, m.NotificationsFailed, m.NotificationTries, m.NotificationSeconds,
			m.ActionsPublished, m.ActionPublishErrors, m.Enforcements)
	}
	return m
}

// severityLabel bounds the severity label.
func severityLabel(s string) string {
	if SeverityRank(s) == 0 {
		return "other"
	}
	return s
}
