// Package dashboards holds sessionmon's Grafana dashboards and their
// provisioning files; it has no code, only the tests that prove them:
//
//   - operations.json (Prometheus): every PromQL expression parses with
//     Prometheus's own parser, names only metric families the programs
//     export (with their histogram and counter suffixes), and matches, groups
//     and labels its legends by labels those families have. The families are
//     read from the programs' metrics, and TestCatalogMatchesPrograms checks
//     them against what the running programs serve on /metrics.
//   - security.json (ClickHouse, grafana-clickhouse-datasource): every query,
//     with the plugin's macros expanded, runs against a real ClickHouse
//     holding the project's schema and rows written by the audit writer's
//     batches, returns rows, and returns the same rows when every row is
//     stored twice.
//   - provisioning/: the data sources and the dashboard provider.
package dashboards
