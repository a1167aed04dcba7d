#!/bin/sh
# make test: the package tests, then the notebooks under nbval with the machine's own CPU kernels and
# with forced ones (ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE), those two side by side (about 2 of
# their 7 minutes saved on 2 cores; TEST_PARALLEL=0 runs them one after the other). Every part runs
# even when an earlier one failed; the end names the failed parts and how to rerun one alone.
# Usage (from the Makefile): sh tools/run_test_parts.sh "$(MAKE)"
make_cmd=${1:-make}
logs=build/test-logs
mkdir -p "$logs"
failed=""
start=$(date +%s)

$make_cmd --no-print-directory test-package || failed="$failed package"

if [ "${TEST_PARALLEL:-1}" = "1" ]; then
    echo ">> nbval-native and nbval-forced side by side (logs: $logs/nbval-*.log, printed when both end)"
    for part in nbval-native nbval-forced; do
        ( $make_cmd --no-print-directory "test-$part" > "$logs/$part.log" 2>&1; echo $? > "$logs/$part.rc" ) &
    done
    wait
    for part in nbval-native nbval-forced; do
        cat "$logs/$part.log"
        [ "$(cat "$logs/$part.rc")" = "0" ] || failed="$failed $part"
    done
else
    for part in nbval-native nbval-forced; do
        $make_cmd --no-print-directory "test-$part" || failed="$failed $part"
    done
fi

seconds=$(( $(date +%s) - start ))
if [ -n "$failed" ]; then
    echo ">> make test FAILED in:$failed (after ${seconds} s; one part alone: make test-<part>)"
    exit 1
fi
echo ">> make test: all parts passed (package nbval-native nbval-forced) in ${seconds} s"
