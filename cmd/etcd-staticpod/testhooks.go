//go:build testhooks

package main

import (
	"os"
	"time"
)

// testWriteDelay, in a binary built with -tags testhooks only, holds every
// run with its temp files on disk for $ETCD_STATICPOD_TEST_WRITE_DELAY, so
// that tests can overlap runs and interrupt them mid-write.
func testWriteDelay() time.Duration {
	d, _ := time.ParseDuration(os.Getenv("ETCD_STATICPOD_TEST_WRITE_DELAY"))
	return d
}
