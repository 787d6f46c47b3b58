// Command refsvc is the yardstick for the session service's load test: the
// "naive Go handler with one go-redis pipeline" that the session-service
// issue quotes for scale (about 35,000 validates/s on its machine), built
// here so that it runs on the same machine, under the same wrk script, as
// sessionsvc (scripts/loadcompare.sh). Figures from different machines do
// not compare; ratios from one run do.
//
// It answers POST /v1/sessions/validate with what a minimal session check
// does and nothing more: decode the body with encoding/json, hash the
// token, one pipeline of HGETALL and PEXPIRE (the sliding idle timeout),
// and the session as JSON. No API key, outbox, event, CSRF, state or
// timeout checks, metrics or logs. With -bare it skips Redis too and
// answers a constant: the cost of net/http alone.
//
// It seeds one Redis hash per token of -tokens (the file
// tools/seedsessions writes) under -prefix, and deletes them on exit.
// A test fixture for throwaway Redis data: never point it at a real one.
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/redis/go-redis/v9"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "refsvc:", err)
		os.Exit(1)
	}
}

func run() error {
	listen := flag.String("listen", "127.0.0.1:18081", "address to serve on")
	redisURL := flag.String("redis-url", "redis://127.0.0.1:6379/0", "Redis URL")
	tokens := flag.String("tokens", "", "file of tokens, one a line, to seed sessions for")
	prefix := flag.String("prefix", "refsvc:", "prefix of the seeded keys")
	bare := flag.Bool("bare", false, "answer a constant without Redis: net/http alone")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	mux := http.NewServeMux()
	if *bare {
		mux.HandleFunc("POST /v1/sessions/validate", func(w http.ResponseWriter, r *http.Request) {
			var req validateRequest
			if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
				http.Error(w, err.Error(), http.StatusBadRequest)
				return
			}
			w.Header().Set("Content-Type", "application/json")
			_, _ = w.Write([]byte(`{"user_id":"u","ip":"198.51.100.7","user_agent":"loadtest"}` + "\n"))
		})
	} else {
		opts, err := redis.ParseURL(*redisURL)
		if err != nil {
			return fmt.Errorf("-redis-url: %w", err)
		}
		rdb := redis.NewClient(opts)
		defer rdb.Close()
		keys, err := seed(ctx, rdb, *tokens, *prefix)
		if err != nil {
			return err
		}
		defer rdb.Del(context.WithoutCancel(ctx), keys...)
		mux.HandleFunc("POST /v1/sessions/validate", validate(rdb, *prefix))
	}

	srv := &http.Server{Addr: *listen, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() {
		<-ctx.Done()
		_ = srv.Shutdown(context.WithoutCancel(ctx))
	}()
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

type validateRequest struct {
	Token     string `json:"token"`
	IP        string `json:"ip"`
	UserAgent string `json:"user_agent"`
	Path      string `json:"path"`
}

func validate(rdb *redis.Client, prefix string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var req validateRequest
		if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		key := prefix + hashToken(req.Token)
		pipe := rdb.Pipeline()
		get := pipe.HGetAll(r.Context(), key)
		pipe.PExpire(r.Context(), key, 30*time.Minute)
		if _, err := pipe.Exec(r.Context()); err != nil {
			http.Error(w, "unavailable", http.StatusServiceUnavailable)
			return
		}
		if len(get.Val()) == 0 {
			http.Error(w, "session_not_found", http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(get.Val())
	}
}

func hashToken(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// seed writes a session hash for every token of file and returns the keys.
func seed(ctx context.Context, rdb *redis.Client, file, prefix string) ([]string, error) {
	if file == "" {
		return nil, errors.New("-tokens: a tokens file is required (or -bare)")
	}
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("-tokens: %w", err)
	}
	defer f.Close()
	var keys []string
	pipe := rdb.Pipeline()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		key := prefix + hashToken(sc.Text())
		keys = append(keys, key)
		pipe.HSet(ctx, key, "user_id", fmt.Sprintf("user-%d", len(keys)), "ip", "198.51.100.7",
			"user_agent", "loadtest", "created_at", time.Now().UnixMilli())
		pipe.PExpire(ctx, key, time.Hour)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("-tokens: %w", err)
	}
	if len(keys) == 0 {
		return nil, fmt.Errorf("-tokens: %s holds no tokens", file)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("seed Redis: %w", err)
	}
	return keys, nil
}
