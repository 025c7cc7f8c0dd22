package worker_test

import (
	"os"
	"testing"

	"example.com/acme/shop/testsupport"
)

func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }
