# sessionmon developer commands. `make help` lists them.
.PHONY: help run test load bench fuzz clickhouse

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  %-12s %s\n", $$1, $$2}'

run: ## run the session service against local Redis and NATS (demo API keys)
	SESSIONSVC_API_KEYS=$${SESSIONSVC_API_KEYS:-demo:app:demo-app-secret-change-me-0123,ops:admin:demo-admin-secret-change-me-01} \
	  go run ./cmd/sessionsvc -log-format text

test: ## every check and test against real servers (what CI runs)
	bash scripts/test.sh

load: ## load test of validate: scripts/loadtest.sh [duration] [connections]
	bash scripts/loadtest.sh 20s 50 2

bench: ## Go benchmarks
	go test -run XXX -bench . -benchtime 20000x ./redisstore/

fuzz: ## run each fuzzer for 30 s
	go test -run XXX -fuzz FuzzDecode -fuzztime 30s ./events/
	go test -run XXX -fuzz FuzzRequestBodies -fuzztime 30s ./httpapi/

clickhouse: ## start the ClickHouse test server
	bash scripts/clickhouse.sh start
