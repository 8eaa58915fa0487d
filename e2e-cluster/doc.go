// Package e2ecluster holds the tests of run.sh's own plumbing, `make
// e2e-cluster`'s script: that a step whose command fails says so on a FAIL
// line and counts in the closing summary. The run itself is run.sh.
package e2ecluster
