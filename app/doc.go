// Package app holds sessionmon's programs as importable packages, one
// directory each: app/sessionsvc, app/detectorsvc, app/auditsvc,
// app/alertersvc, and app/standalone (all of them in one process). Each has a Run(ctx, ...)
// that parses its flags (with environment fallbacks), wires the domain
// packages to their adapters, and serves until ctx ends. cmd/* only call
// Run; tests start the real programs in-process on :0, and the one-command
// pipeline runs several of them in one process.
package app
