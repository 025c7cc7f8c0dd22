package worker_test

import (
	"os"
	"testing"

	"example.com/jobs/testsupport"
)

func TestMain(m *testing.M) { os.Exit(testsupport.Main(m)) }
