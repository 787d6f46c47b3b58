// Package geotest gives tests the project's GeoIP test databases, built by
// package geodb from geo/geodb/networks.csv into a temporary directory.
package geotest

import (
	"path/filepath"
	"runtime"
	"testing"

	"github.com/sessionmon/sessionmon/geo/geodb"
)

// Paths are the files of a built set of databases.
type Paths = geodb.Paths

// Build builds the databases of the CSV at csvPath into dir.
func Build(csvPath, dir string) (Paths, error) { return geodb.Build(csvPath, dir) }

// CSVPath is the repository's geo/geodb/networks.csv, found from this
// source file's location, so it works from any package's tests.
func CSVPath() string {
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		panic("geotest: cannot find the source directory")
	}
	return filepath.Join(filepath.Dir(file), "..", "geodb", "networks.csv")
}

// MustBuild builds the databases of geo/geodb/networks.csv into
// t.TempDir(), failing the test on error.
func MustBuild(t testing.TB) Paths {
	t.Helper()
	p, err := geodb.BuildDemo(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	return p
}
