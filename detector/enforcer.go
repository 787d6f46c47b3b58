package detector

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/sessionmon/sessionmon/client"
	"github.com/sessionmon/sessionmon/events"
	"github.com/sessionmon/sessionmon/rules"
)

// SessionAPI is the part of the session service's admin API the enforcer
// calls; *client.Client is one.
type SessionAPI interface {
	RevokeSession(ctx context.Context, sessionID, reason, rule string) error
	ForceReauth(ctx context.Context, sessionID, reason, rule string) error
	RevokeUserSessions(ctx context.Context, userID, reason, exceptSessionID string) (int, error)
}

var _ SessionAPI = (*client.Client)(nil)

// AlertDelivery is a stored alert handed to the enforcer, with its
// acknowledgement. Alerts wait in the ALERTS stream until enforced: that
// stream is the enforcer's durable retry queue.
type AlertDelivery struct {
	Alert   events.Alert
	Err     error // the decode error of a malformed message
	Subject string
	Data    []byte
	// Attempt is 1 on the first delivery, 2 on the first retry...
	Attempt int
	// Ack marks the alert handled; Retry has it delivered again after
	// delay.
	Ack   func() error
	Retry func(delay time.Duration) error
}

// AlertSource delivers stored alerts (eventbus.EnforcerSource).
type AlertSource interface {
	Next(ctx context.Context) (AlertDelivery, error)
}

// ActionSink stores the outcome of enforcement.
type ActionSink interface {
	PublishAction(ctx context.Context, a events.Action) error
	DeadLetter(ctx context.Context, subject string, data []byte, reason string) error
}

// Enforcer carries out the actions alerts ask for, by calling the session
// service: revoke a session, force a re-auth, or revoke all of a user's
// sessions. A call the service cannot answer (down, 5xx, a bad API key)
// is retried with backoff; a refusal for good (the session is gone) is
// recorded as a failed action. Each outcome is an events.Action.
type Enforcer struct {
	api     SessionAPI
	source  AlertSource
	sink    ActionSink
	log     *slog.Logger
	metrics *Metrics
	now     func() time.Time
	// MaxAttempts bounds the retries of one alert; then the action is
	// recorded as failed ("gave_up").
	MaxAttempts int
	// Backoff is the delay before retry n (1-based).
	Backoff func(attempt int) time.Duration
}

// NewEnforcer returns an enforcer; Run starts it.
func NewEnforcer(api SessionAPI, source AlertSource, sink ActionSink, log *slog.Logger, m *Metrics) *Enforcer {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if m == nil {
		m = NewMetrics(nil)
	}
	return &Enforcer{api: api, source: source, sink: sink, log: log, metrics: m, now: time.Now,
		MaxAttempts: 200, Backoff: Backoff(250*time.Millisecond, 30*time.Second)}
}

// Backoff doubles from first up to limit.
func Backoff(first, limit time.Duration) func(int) time.Duration {
	return func(attempt int) time.Duration {
		d := first
		for i := 1; i < attempt && d < limit; i++ {
			d *= 2
		}
		return min(d, limit)
	}
}

// Run enforces alerts until ctx ends.
func (e *Enforcer) Run(ctx context.Context) error {
	for {
		d, err := e.source.Next(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("alert source: %w", err)
		}
		if err := e.handle(ctx, d); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			e.log.Error("enforcement not recorded; the alert will be delivered again", "err", err)
		}
	}
}

func (e *Enforcer) handle(ctx context.Context, d AlertDelivery) error {
	if d.Err != nil {
		e.metrics.deadLetters.WithLabelValues(deadLetterReason(d.Err)).Inc()
		if err := e.sink.DeadLetter(ctx, d.Subject, d.Data, d.Err.Error()); err != nil {
			return d.Retry(time.Second)
		}
		return d.Ack()
	}
	a := d.Alert
	if !Enforceable(a) {
		return d.Ack()
	}
	act, retry := e.Enforce(ctx, a, d.Attempt)
	if retry {
		e.metrics.actions.WithLabelValues(a.Action, "retry").Inc()
		return d.Retry(e.Backoff(d.Attempt))
	}
	e.metrics.actions.WithLabelValues(a.Action, act.Result).Inc()
	if err := e.sink.PublishAction(ctx, act); err != nil {
		// Not acknowledged: the alert comes again and the call, which is
		// idempotent, is made again.
		return errors.Join(err, d.Retry(time.Second))
	}
	e.log.Info("enforced", "alert", a.ID, "rule", a.Rule, "action", a.Action, "target", a.Target,
		"result", act.Result, "error", act.Error, "attempts", act.Attempts)
	return d.Ack()
}

// Enforceable reports whether an alert asks the enforcer to act: an
// enforcing rule whose action is not a mere alert, not yet carried out.
func Enforceable(a events.Alert) bool {
	return a.Mode == string(rules.Enforce) && a.Action != string(rules.ActionAlert) && a.ActionResult == "pending"
}

// Enforce calls the session service for one alert. It returns the action
// to record, or retry when the call should be made again later.
func (e *Enforcer) Enforce(ctx context.Context, a events.Alert, attempt int) (act events.Action, retry bool) {
	act = events.Action{
		ID: events.AlertID("enforce", a.Target, a.ID), Kind: events.KindEnforcement, Actor: "detector",
		Action: a.Action, AlertID: a.ID, Rule: a.Rule, UserID: a.UserID, Attempts: attempt,
	}
	if a.Action != string(rules.ActionRevokeUser) {
		act.SessionID = a.Target
	}
	var err error
	start := e.now()
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	reason := a.RuleType
	switch rules.Action(a.Action) {
	case rules.ActionReauth:
		err = e.requireTarget(a, func() error { return e.api.ForceReauth(cctx, a.Target, reason, a.Rule) })
	case rules.ActionRevokeSession:
		err = e.requireTarget(a, func() error { return e.api.RevokeSession(cctx, a.Target, reason, a.Rule) })
	case rules.ActionRevokeUser:
		err = e.requireTarget(a, func() error {
			n, err := e.api.RevokeUserSessions(cctx, a.Target, reason, "")
			act.Count = n
			return err
		})
	default:
		err = fmt.Errorf("unknown action %q", a.Action)
	}
	e.metrics.callbackSeconds.Observe(e.now().Sub(start).Seconds())
	act.Time = e.now()
	switch {
	case err == nil:
		act.Result = events.ResultDone
		return act, false
	case temporary(err) && ctx.Err() == nil:
		e.metrics.callbackErrors.WithLabelValues("unavailable").Inc()
		if attempt < e.MaxAttempts {
			e.log.Warn("session service call failed; will retry", "alert", a.ID, "action", a.Action, "attempt", attempt, "err", err)
			return act, true
		}
		act.Result, act.Error = events.ResultFailed, "gave_up"
	case ctx.Err() != nil:
		return act, true
	default:
		e.metrics.callbackErrors.WithLabelValues("rejected").Inc()
		act.Result, act.Error = events.ResultFailed, errorCode(err)
	}
	return act, false
}

var errNoTarget = errors.New("alert has no target")

func (e *Enforcer) requireTarget(a events.Alert, call func() error) error {
	if a.Target == "" {
		return errNoTarget
	}
	return call()
}

// temporary reports whether a failed call may work later: the service is
// down or overloaded, answered 5xx, or refused the API key (a
// configuration error an operator fixes; enforcement must not be lost).
func temporary(err error) bool {
	if client.IsUnavailable(err) {
		return true
	}
	var ce *client.Error
	if errors.As(err, &ce) {
		return ce.Status >= 500 || ce.Status == http.StatusUnauthorized || ce.Status == http.StatusTooManyRequests
	}
	return false
}

func errorCode(err error) string {
	var ce *client.Error
	switch {
	case errors.As(err, &ce) && ce.Code != "":
		return ce.Code
	case errors.Is(err, errNoTarget):
		return "no_target"
	}
	return "invalid_request"
}
