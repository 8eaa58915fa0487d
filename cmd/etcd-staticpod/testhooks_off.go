//go:build !testhooks

package main

import "time"

// testWriteDelay is 0 outside the tests' build (see testhooks.go).
func testWriteDelay() time.Duration { return 0 }
