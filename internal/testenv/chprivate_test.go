package testenv_test

import (
	"context"
	"testing"

	"github.com/sessionmon/sessionmon/internal/testenv"
)

func TestPrivateClickHouse(t *testing.T) {
	_, conn := testenv.PrivateClickHouse(t)
	var n uint8
	if err := conn.QueryRow(context.Background(), "SELECT 1").Scan(&n); err != nil || n != 1 {
		t.Fatal(n, err)
	}
}
