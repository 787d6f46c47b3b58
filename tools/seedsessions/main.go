// Command seedsessions creates sessions through the session service's API
// and writes their tokens, one a line, for load tests (scripts/loadtest.sh).
// The tokens file is a test artifact of a throwaway service: never point
// this at a real deployment.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"net/http"
	"os"
	"sync"
)

func main() {
	url := flag.String("url", "http://127.0.0.1:18080", "session service URL")
	key := flag.String("key", "", "app API key secret")
	n := flag.Int("n", 1000, "sessions to create (one user each)")
	out := flag.String("out", "tokens.txt", "file to write the tokens to")
	flag.Parse()
	if err := seed(*url, *key, *n, *out); err != nil {
		fmt.Fprintln(os.Stderr, "seedsessions:", err)
		os.Exit(1)
	}
}

func seed(url, key string, n int, out string) error {
	toks := make([]string, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			body, _ := json.Marshal(map[string]string{
				"user_id": fmt.Sprintf("load-user-%d", i), "ip": fmt.Sprintf("198.51.100.%d", i%250+1), "user_agent": "loadtest",
			})
			req, _ := http.NewRequest("POST", url+"/v1/sessions", bytes.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+key)
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				errs <- err
				return
			}
			defer resp.Body.Close()
			var v struct{ Token string }
			if resp.StatusCode != 201 || json.NewDecoder(resp.Body).Decode(&v) != nil {
				errs <- fmt.Errorf("create: status %d", resp.StatusCode)
				return
			}
			toks[i] = v.Token
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	f, err := os.OpenFile(out, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o600)
	if err != nil {
		return err
	}
	w := bufio.NewWriter(f)
	for _, t := range toks {
		fmt.Fprintln(w, t)
	}
	if err := w.Flush(); err != nil {
		return err
	}
	return f.Close()
}
