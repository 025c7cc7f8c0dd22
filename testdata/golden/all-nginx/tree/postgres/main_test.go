package postgres

import (
	"os"
	"testing"

	"example.com/acme/shop/testsupport"
)

// TestMain is shared by every test file of the package (notes, migrations,
// and the worker's elector and runs): testsupport stops the shared
// PostgreSQL server at the end.
func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }
