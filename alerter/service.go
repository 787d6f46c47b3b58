package alerter

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/sessionmon/sessionmon/events"
)

// Config wires a Service.
type Config struct {
	Store   Store
	Router  *Router
	Actions ActionPublisher
	// Window: an alert joins an active incident of its rule and user (or
	// IP) when it is within Window of the incident's alerts. Default 1h.
	Window time.Duration
	// NotifyMaxAge: alerts older than this (event time) open incidents
	// without notifying, e.g. when a new alerter catches up on the
	// stream's history. Default 24h.
	NotifyMaxAge time.Duration
	Retry        Retry
	// Retention: closed incidents are deleted this long after their last
	// change. Default 90 days. The audit log keeps everything.
	Retention time.Duration
	// JanitorInterval is how often pending deliveries are resumed, actions
	// republished and old incidents deleted. Default 15s.
	JanitorInterval time.Duration
	// AttemptTimeout bounds one notification attempt. Default 15s.
	AttemptTimeout time.Duration
	// ConsoleURL is the review console's address, for links in
	// notifications ("https://alerts.example.com"); none when empty.
	ConsoleURL string
	// Instance names this alerter among several; random when empty.
	Instance string
	Now      func() time.Time
	Log      *slog.Logger
	Metrics  *Metrics
}

// Service applies alerts and reviewers' decisions to incidents and
// delivers notifications.
type Service struct {
	cfg     Config
	store   Store
	index   *index
	log     *slog.Logger
	m       *Metrics
	now     func() time.Time
	ctx     context.Context // for deliveries; ends when Run returns
	cancel  context.CancelFunc
	wg      sync.WaitGroup
	mu      sync.Mutex
	running map[string]bool // deliveries in progress here
}

// New checks the configuration and returns a service; Run starts it.
func New(c Config) (*Service, error) {
	if c.Store == nil {
		return nil, errors.New("alerter: no store")
	}
	if c.Actions == nil {
		return nil, errors.New("alerter: no action publisher")
	}
	if c.Window <= 0 {
		c.Window = time.Hour
	}
	if c.NotifyMaxAge <= 0 {
		c.NotifyMaxAge = 24 * time.Hour
	}
	if c.Retry == (Retry{}) {
		c.Retry = DefaultRetry()
	}
	if err := c.Retry.Validate(); err != nil {
		return nil, fmt.Errorf("alerter: retry: %w", err)
	}
	if c.Retention <= 0 {
		c.Retention = 90 * 24 * time.Hour
	}
	if c.JanitorInterval <= 0 {
		c.JanitorInterval = 15 * time.Second
	}
	if c.AttemptTimeout <= 0 {
		c.AttemptTimeout = 15 * time.Second
	}
	if c.Instance == "" {
		c.Instance = randomID()[:12]
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	if c.Log == nil {
		c.Log = slog.Default()
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	c.ConsoleURL = strings.TrimRight(c.ConsoleURL, "/")
	ctx, cancel := context.WithCancel(context.Background())
	return &Service{
		cfg: c, store: c.Store, index: newIndex(c.Metrics.Incidents), log: c.Log.With("component", "alerter"),
		m: c.Metrics, now: c.Now, ctx: ctx, cancel: cancel, running: map[string]bool{},
	}, nil
}

// Run loads every incident into the index and keeps it current, and
// resumes deliveries and republishes actions, until ctx ends; then it
// stops deliveries in progress (they resume at the next start).
func (s *Service) Run(ctx context.Context) error {
	defer func() {
		// Under mu: a delivery either started (Add) before the cancel, or
		// sees it and does not start, so Wait waits for every one.
		s.mu.Lock()
		s.cancel()
		s.mu.Unlock()
		s.wg.Wait()
	}()
	watchErr := make(chan error, 1)
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	go func() {
		watchErr <- s.store.Watch(wctx, func(id string, inc *Incident, rev uint64) {
			if inc == nil {
				s.index.del(id, rev)
				return
			}
			s.index.put(inc, rev)
		}, s.index.setLoaded)
	}()
	t := time.NewTicker(s.cfg.JanitorInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case err := <-watchErr:
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("alerter: watch incidents: %w", err)
		case <-t.C:
			if s.index.isLoaded() {
				s.sweep(ctx)
			}
		}
	}
}

// Ready reports whether every stored incident is loaded.
func (s *Service) Ready() bool { return s.index.isLoaded() }

// HandleAlert groups an alert into an active incident of its rule and user
// (or IP), or opens one and notifies. An alert seen before is ignored, so
// redelivery is harmless. An error means nothing was stored: redeliver.
func (s *Service) HandleAlert(ctx context.Context, a events.Alert) error {
	s.m.AlertsReceived.WithLabelValues(severityLabel(a.Severity)).Inc()
	key := GroupKey(a)
	for range 20 {
		now := s.now()
		gid, grev, err := s.store.Group(ctx, key)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("alert %s: group: %w", a.ID, err)
		}
		if gid != "" {
			inc, rev, err := s.store.Get(ctx, gid)
			switch {
			case errors.Is(err, ErrNotFound):
			case err != nil:
				return fmt.Errorf("alert %s: incident %s: %w", a.ID, gid, err)
			case inc.Has(a.ID):
				s.m.AlertsDuplicate.Inc()
				return nil
			case inc.Accepts(a, s.cfg.Window):
				if inc.Add(a, now) {
					s.addDeliveries(inc, ReasonEscalated, a.Time, now)
				}
				nrev, err := s.store.Update(ctx, inc, rev)
				if errors.Is(err, ErrConflict) {
					continue
				}
				if err != nil {
					return fmt.Errorf("alert %s: update incident %s: %w", a.ID, inc.ID, err)
				}
				s.index.put(inc.Clone(), nrev)
				s.startPending(inc)
				return nil
			}
		}
		inc := NewIncident(a, now)
		s.addDeliveries(inc, ReasonOpened, a.Time, now)
		nrev, err := s.store.Create(ctx, inc)
		if errors.Is(err, ErrExists) {
			// Redelivered after the incident was stored but before the
			// alert was acknowledged.
			existing, _, err := s.store.Get(ctx, inc.ID)
			if err != nil {
				return fmt.Errorf("alert %s: incident %s: %w", a.ID, inc.ID, err)
			}
			if !existing.Has(a.ID) {
				return fmt.Errorf("alert %s: incident %s exists without it", a.ID, inc.ID)
			}
			if gid != existing.ID {
				s.setGroup(ctx, key, existing.ID, grev)
			}
			s.m.AlertsDuplicate.Inc()
			s.startPending(existing)
			return nil
		}
		if err != nil {
			return fmt.Errorf("alert %s: create incident: %w", a.ID, err)
		}
		s.index.put(inc.Clone(), nrev)
		s.m.IncidentsOpened.WithLabelValues(severityLabel(inc.Severity)).Inc()
		s.setGroup(ctx, key, inc.ID, grev)
		s.log.Info("incident opened", "incident", inc.ID, "rule", inc.Rule, "severity", inc.Severity,
			"user_id", inc.UserID, "ip", inc.IP, "deliveries", len(inc.Deliveries))
		s.startPending(inc)
		return nil
	}
	return fmt.Errorf("alert %s: %w (gave up after 20 tries)", a.ID, ErrConflict)
}

// HandleAction records the outcome of the detector's enforcement of an
// alert on the incident that holds the alert. Reviewers' actions (this
// alerter's own) are ignored; an action about an alert no incident holds
// is an ErrNotFound error.
func (s *Service) HandleAction(ctx context.Context, a events.Action) error {
	if a.Kind != events.KindEnforcement || a.AlertID == "" {
		return nil
	}
	id, err := s.incidentOf(ctx, a)
	if err != nil {
		return err
	}
	if id == "" {
		// Its alert may be on its way again (a failed delivery comes back
		// after what followed it): the consumer retries, then gives up.
		return fmt.Errorf("enforcement %s: %w: no incident holds alert %s", a.ID, ErrNotFound, a.AlertID)
	}
	result := a.Result
	_, err = s.modify(ctx, id, func(inc *Incident) error {
		if slices.ContainsFunc(inc.Enforcements, func(e Enforcement) bool { return e.ActionID == a.ID }) {
			return errStop
		}
		inc.Enforcements = append(inc.Enforcements, Enforcement{ActionID: a.ID, AlertID: a.AlertID, Time: a.Time,
			Action: a.Action, SessionID: a.SessionID, Result: a.Result, Error: a.Error, Attempts: a.Attempts, Count: a.Count})
		if len(inc.Enforcements) > MaxEnforcements {
			inc.Enforcements = inc.Enforcements[len(inc.Enforcements)-MaxEnforcements:]
		}
		for i := range inc.Alerts {
			if inc.Alerts[i].ID == a.AlertID {
				inc.Alerts[i].ActionResult = a.Result
			}
		}
		return nil
	})
	switch {
	case errors.Is(err, errStop), errors.Is(err, ErrNotFound):
		return nil
	case err != nil:
		return fmt.Errorf("enforcement %s: incident %s: %w", a.ID, id, err)
	}
	s.m.Enforcements.WithLabelValues(result).Inc()
	if a.Result == events.ResultFailed {
		s.log.Warn("the detector's action failed", "incident", id, "action", a.Action, "error", a.Error, "attempts", a.Attempts)
	}
	return nil
}

// incidentOf finds the incident holding the alert an action is about: the
// one its rule and user point to, the one it opened, or any in the index.
func (s *Service) incidentOf(ctx context.Context, a events.Action) (string, error) {
	gid, _, err := s.store.Group(ctx, GroupKey(events.Alert{Rule: a.Rule, UserID: a.UserID}))
	if err != nil && !errors.Is(err, ErrNotFound) {
		return "", err
	}
	for _, id := range []string{gid, IncidentID(a.AlertID)} {
		if id == "" {
			continue
		}
		inc, _, err := s.store.Get(ctx, id)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return "", err
		}
		if err == nil && inc.Has(a.AlertID) {
			return id, nil
		}
	}
	for _, inc := range s.index.all() {
		if inc.Has(a.AlertID) {
			return inc.ID, nil
		}
	}
	return "", nil
}

// setGroup points the group key at id. A conflict means another instance
// opened an incident for the same key at the same moment: both stay, and
// repeats join the one the key points to.
func (s *Service) setGroup(ctx context.Context, key, id string, rev uint64) {
	if err := s.store.SetGroup(ctx, key, id, rev); err != nil {
		s.log.Warn("could not point the group at the new incident", "incident", id, "err", err)
	}
}

// addDeliveries queues a notification of inc to each notifier routed for
// its severity. Alerts older than NotifyMaxAge are recorded as skipped.
func (s *Service) addDeliveries(inc *Incident, reason string, alertTime, now time.Time) {
	for _, name := range s.cfg.Router.Route(inc.Severity) {
		h := sha256.Sum256([]byte(inc.ID + "\x00" + name + "\x00" + reason + "\x00" + inc.Severity))
		d := Delivery{ID: hex.EncodeToString(h[:12]), Notifier: name, Reason: reason, Severity: inc.Severity,
			Status: DeliveryPending, CreatedAt: now}
		if slices.ContainsFunc(inc.Deliveries, func(o Delivery) bool { return o.ID == d.ID }) {
			continue
		}
		if now.Sub(alertTime) > s.cfg.NotifyMaxAge {
			d.Status, d.LastError, d.DoneAt = DeliverySkipped, "alert older than the notify max age", now
		}
		inc.Deliveries = append(inc.Deliveries, d)
	}
}

// errStop ends a modification without writing.
var errStop = errors.New("no change")

// modify applies fn to the current incident and stores it, retrying on
// conflicts. When fn returns errStop nothing is written and modify returns
// the incident and errStop.
func (s *Service) modify(ctx context.Context, id string, fn func(*Incident) error) (*Incident, error) {
	for range 20 {
		inc, rev, err := s.store.Get(ctx, id)
		if err != nil {
			return nil, err
		}
		if err := fn(inc); err != nil {
			return inc, err
		}
		inc.UpdatedAt = s.now()
		nrev, err := s.store.Update(ctx, inc, rev)
		if errors.Is(err, ErrConflict) {
			continue
		}
		if err != nil {
			return nil, err
		}
		s.index.put(inc.Clone(), nrev)
		return inc, nil
	}
	return nil, fmt.Errorf("incident %s: %w (gave up after 20 tries)", id, ErrConflict)
}

// Get returns an incident as stored now.
func (s *Service) Get(ctx context.Context, id string) (*Incident, error) {
	inc, _, err := s.store.Get(ctx, id)
	return inc, err
}

// List returns the incidents f selects, latest first. They are shared:
// do not modify them.
func (s *Service) List(f Filter) []*Incident { return s.index.list(f) }

// Rules returns the rules of the incidents kept.
func (s *Service) Rules() []string { return s.index.rules() }

// Decide applies a reviewer's decision and publishes it as an action. A
// false positive needs a note. The decision is stored even when the action
// cannot be published at once: it is republished until it is (its change
// shows Recorded false meanwhile).
func (s *Service) Decide(ctx context.Context, id, actor string, d Decision, note string) (*Incident, error) {
	if !d.Valid() {
		return nil, fmt.Errorf("%w: unknown decision %q", ErrInvalid, d)
	}
	if err := checkActor(actor); err != nil {
		return nil, err
	}
	if err := CheckNote(note); err != nil {
		return nil, err
	}
	if d == MarkFalsePositive && strings.TrimSpace(note) == "" {
		return nil, fmt.Errorf("%w: note: required to mark a false positive", ErrInvalid)
	}
	var c Change
	inc, err := s.modify(ctx, id, func(inc *Incident) error {
		to, err := d.From(inc.State)
		if err != nil {
			return err
		}
		c = Change{ActionID: randomID(), Time: s.now(), Actor: actor, Action: string(d), From: inc.State, To: to,
			Result: events.ResultDone, Note: note}
		inc.State = to
		inc.addChange(c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("decision", "incident", id, "actor", actor, "decision", d, "from", c.From, "to", c.To)
	return s.publish(ctx, inc, c), nil
}

// Record stores a session action a reviewer took about an incident
// (ActionRevokeSession, ActionRevokeUser, ActionReauth), with its result,
// and publishes it as an action.
func (s *Service) Record(ctx context.Context, id string, c Change) (*Incident, error) {
	if c.Action != ActionRevokeSession && c.Action != ActionRevokeUser && c.Action != ActionReauth {
		return nil, fmt.Errorf("%w: unknown session action %q", ErrInvalid, c.Action)
	}
	if err := checkActor(c.Actor); err != nil {
		return nil, err
	}
	if err := CheckNote(c.Note); err != nil {
		return nil, err
	}
	c.ActionID, c.Time, c.From, c.To, c.Recorded = randomID(), s.now(), "", "", false
	if c.Result == "" {
		c.Result = events.ResultDone
	}
	inc, err := s.modify(ctx, id, func(inc *Incident) error {
		inc.addChange(c)
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.log.Info("session action", "incident", id, "actor", c.Actor, "action", c.Action, "session_id", c.SessionID,
		"result", c.Result, "count", c.Count)
	return s.publish(ctx, inc, c), nil
}

func checkActor(actor string) error {
	if actor == "" || len(actor) > 128 || strings.ContainsFunc(actor, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return fmt.Errorf("%w: actor %q", ErrInvalid, actor)
	}
	return nil
}

// Action returns the audit action of a change.
func (inc *Incident) Action(c Change) events.Action {
	return events.Action{
		ID: c.ActionID, Time: c.Time, Kind: events.KindReview, Actor: c.Actor, Action: c.Action,
		AlertID: inc.ID, Rule: inc.Rule, UserID: inc.UserID, SessionID: c.SessionID,
		Result: c.Result, Error: c.Error, Note: c.Note, Count: c.Count,
	}
}

// publish publishes a change's action and marks it recorded. It returns
// the incident as it now is; a failure is logged and left to the janitor.
func (s *Service) publish(ctx context.Context, inc *Incident, c Change) *Incident {
	if err := s.cfg.Actions.PublishAction(ctx, inc.Action(c)); err != nil {
		s.m.ActionPublishErrors.Inc()
		s.log.Warn("publish action; will retry", "incident", inc.ID, "action_id", c.ActionID, "err", err)
		return inc
	}
	s.m.ActionsPublished.WithLabelValues(c.Action).Inc()
	out, err := s.modify(ctx, inc.ID, func(inc *Incident) error {
		i := slices.IndexFunc(inc.Changes, func(o Change) bool { return o.ActionID == c.ActionID })
		if i < 0 || inc.Changes[i].Recorded {
			return errStop
		}
		inc.Changes[i].Recorded = true
		return nil
	})
	if err != nil && !errors.Is(err, errStop) {
		// Published but not marked: the janitor publishes it again and
		// the stream's duplicate window drops it.
		s.log.Warn("mark action recorded", "incident", inc.ID, "action_id", c.ActionID, "err", err)
		return inc
	}
	return out
}

// startPending starts the pending deliveries of inc.
func (s *Service) startPending(inc *Incident) {
	for _, d := range inc.Deliveries {
		if d.Status == DeliveryPending {
			s.startDelivery(inc.ID, d.ID)
		}
	}
}

// startDelivery delivers one notification in the background unless this
// instance is already delivering it.
func (s *Service) startDelivery(incID, deliveryID string) {
	s.mu.Lock()
	if s.running[deliveryID] || s.ctx.Err() != nil {
		s.mu.Unlock()
		return
	}
	s.running[deliveryID] = true
	s.wg.Add(1)
	s.mu.Unlock()
	go func() {
		defer s.wg.Done()
		defer func() {
			s.mu.Lock()
			delete(s.running, deliveryID)
			s.mu.Unlock()
		}()
		s.deliver(s.ctx, incID, deliveryID)
	}()
}

// deliver makes the attempts of one delivery, recording each on the
// incident, until it is sent, refused, out of attempts, or ctx ends. Before
// each attempt it takes a lease on the delivery, so that two instances do
// not both send it.
func (s *Service) deliver(ctx context.Context, incID, deliveryID string) {
	lease := s.cfg.AttemptTimeout*2 + s.cfg.Retry.Max
	for {
		var d Delivery
		inc, err := s.modify(ctx, incID, func(inc *Incident) error {
			i := slices.IndexFunc(inc.Deliveries, func(d Delivery) bool { return d.ID == deliveryID })
			if i < 0 {
				return errStop
			}
			dd := &inc.Deliveries[i]
			now := s.now()
			if dd.Status != DeliveryPending || (dd.Owner != s.cfg.Instance && dd.Owner != "" && now.Before(dd.LeaseUntil)) {
				return errStop
			}
			dd.Owner, dd.LeaseUntil = s.cfg.Instance, now.Add(lease)
			d = *dd
			return nil
		})
		if err != nil {
			if !errors.Is(err, errStop) && !errors.Is(err, ErrNotFound) && ctx.Err() == nil {
				s.log.Warn("claim delivery; the janitor will resume it", "incident", incID, "delivery", deliveryID, "err", err)
			}
			return
		}
		var attemptErr error
		n, ok := s.cfg.Router.Notifier(d.Notifier)
		if !ok {
			attemptErr = Permanent(fmt.Errorf("notifier %q is no longer configured", d.Notifier))
		} else {
			actx, cancel := context.WithTimeout(ctx, s.cfg.AttemptTimeout)
			start := time.Now()
			attemptErr = n.Notify(actx, s.notification(inc, d))
			cancel()
			s.m.NotificationSeconds.WithLabelValues(d.Notifier).Observe(time.Since(start).Seconds())
		}
		if attemptErr != nil && ctx.Err() != nil {
			return // shutting down: the attempt does not count; resumed at the next start
		}
		attempts := d.Attempts + 1
		status, result := DeliverySent, "ok"
		switch {
		case attemptErr == nil:
		case IsPermanent(attemptErr):
			status, result = DeliveryFailed, "refused"
		case attempts >= s.cfg.Retry.Attempts:
			status, result = DeliveryFailed, "retry"
		default:
			status, result = DeliveryPending, "retry"
		}
		s.m.NotificationTries.WithLabelValues(d.Notifier, result).Inc()
		delay := s.cfg.Retry.Delay(attempts, attemptErr)
		_, err = s.modify(ctx, incID, func(inc *Incident) error {
			i := slices.IndexFunc(inc.Deliveries, func(d Delivery) bool { return d.ID == deliveryID })
			if i < 0 {
				return errStop
			}
			dd := &inc.Deliveries[i]
			now := s.now()
			dd.Attempts, dd.LastAttempt, dd.Status = attempts, now, status
			dd.LastError = ""
			if attemptErr != nil {
				dd.LastError = truncate(attemptErr.Error(), 300)
			}
			if status == DeliveryPending {
				dd.LeaseUntil = now.Add(delay + s.cfg.AttemptTimeout)
			} else {
				dd.DoneAt, dd.Owner, dd.LeaseUntil = now, "", time.Time{}
			}
			return nil
		})
		if err != nil && !errors.Is(err, errStop) {
			s.log.Warn("record delivery attempt", "incident", incID, "delivery", deliveryID, "err", err)
		}
		switch status {
		case DeliverySent:
			s.m.NotificationsSent.WithLabelValues(d.Notifier).Inc()
			s.log.Info("notification sent", "incident", incID, "notifier", d.Notifier, "reason", d.Reason, "attempts", attempts)
			return
		case DeliveryFailed:
			s.m.NotificationsFailed.WithLabelValues(d.Notifier).Inc()
			s.log.Error("notification failed", "incident", incID, "notifier", d.Notifier, "reason", d.Reason,
				"attempts", attempts, "err", attemptErr)
			return
		}
		s.log.Warn("notification attempt failed; retrying", "incident", incID, "notifier", d.Notifier,
			"attempt", attempts, "in", delay.Round(time.Millisecond), "err", attemptErr)
		select {
		case <-ctx.Done():
			return
		case <-time.After(delay):
		}
	}
}

func (s *Service) notification(inc *Incident, d Delivery) Notification {
	n := Notification{DeliveryID: d.ID, Reason: d.Reason, Incident: inc.Summary(), Alert: inc.Latest()}
	if s.cfg.ConsoleURL != "" {
		n.URL = s.cfg.ConsoleURL + "/alerts/" + inc.ID
	}
	return n
}

// sweep resumes deliveries whose lease ran out (another instance died, or
// this one restarted), republishes actions not yet recorded, and deletes
// closed incidents past the retention.
func (s *Service) sweep(ctx context.Context) {
	now := s.now()
	for _, inc := range s.index.all() {
		busy := false
		for _, c := range inc.Changes {
			if !c.Recorded {
				busy = true
				if now.Sub(c.Time) > 5*time.Second {
					s.publish(ctx, inc, c)
				}
			}
		}
		for _, d := range inc.Deliveries {
			if d.Status == DeliveryPending {
				busy = true
				if d.Owner == "" || d.Owner == s.cfg.Instance || now.After(d.LeaseUntil) {
					s.startDelivery(inc.ID, d.ID)
				}
			}
		}
		if !busy && !inc.State.Active() && now.Sub(inc.UpdatedAt) > s.cfg.Retention {
			s.prune(ctx, inc.ID)
		}
	}
}

// prune deletes a closed incident past the retention, and its group key
// when it still points to it.
func (s *Service) prune(ctx context.Context, id string) {
	inc, rev, err := s.store.Get(ctx, id)
	if err != nil || inc.State.Active() || s.now().Sub(inc.UpdatedAt) <= s.cfg.Retention {
		return
	}
	if gid, grev, err := s.store.Group(ctx, inc.Key); err == nil && gid == id {
		_ = s.store.DeleteGroup(ctx, inc.Key, grev)
	}
	if err := s.store.Delete(ctx, id, rev); err != nil {
		s.log.Warn("delete old incident", "incident", id, "err", err)
		return
	}
	s.log.Info("deleted incident past retention", "incident", id, "updated_at", inc.UpdatedAt)
}

func randomID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for n > 0 && !isRuneStart(s[n]) {
		n--
	}
	return s[:n] + "…"
}

func isRuneStart(b byte) bool { return b&0xC0 != 0x80 }
