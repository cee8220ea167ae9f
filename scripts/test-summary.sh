#!/bin/sh
# gotestsum runs this after "make test" (--post-run-command), with the counts
# in the environment: one closing line. Skipped and failed tests are listed
# above it, each with its output (a skip says why).
passed=$((TESTS_TOTAL - TESTS_FAILED - TESTS_SKIPPED))
echo "make test: ${passed} passed, ${TESTS_FAILED} failed, ${TESTS_SKIPPED} skipped (of ${TESTS_TOTAL}, subtests included)"
