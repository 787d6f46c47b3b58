// Command mkgeodb builds test MaxMind databases (GeoIP2-City, GeoLite2-ASN,
// GeoIP2-Anonymous-IP) from a CSV of networks, for the demo and for local
// runs without a real GeoIP subscription:
//
//	mkgeodb -csv geo/geodb/networks.csv -out /tmp/geodb
//
// The CSV format is described in package geo/geodb. The databases are
// test data, not real geolocation.
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/sessionmon/sessionmon/geo/geodb"
)

func main() {
	csvPath := flag.String("csv", "geo/geodb/networks.csv", "CSV of networks to build from")
	out := flag.String("out", "", "directory to write the .mmdb files to (created if missing)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: mkgeodb -csv FILE -out DIR")
		os.Exit(2)
	}
	p, err := geodb.Build(*csvPath, *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkgeodb:", err)
		os.Exit(1)
	}
	fmt.Println(p.City)
	fmt.Println(p.ASN)
	fmt.Println(p.Anonymous)
}
