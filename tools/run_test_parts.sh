#!/bin/sh
# make test: the package tests and the notebooks under nbval with the machine's own CPU kernels and
# with forced ones (ATEN_CPU_CAPABILITY=avx2 MKL_CBWR=COMPATIBLE), the three side by side (on 2 cores
# the package tests leave a core idle much of the time, and the two nbval parts are the long pole;
# TEST_PARALLEL=0 runs them one after the other). Every part runs even when another one failed;
# each part's log is printed when all have ended (package first), and the end names the failed
# parts and how to rerun one alone.
# Usage (from the Makefile): sh tools/run_test_parts.sh "$(MAKE)"
make_cmd=${1:-make}
logs=build/test-logs
failed=""
start=$(date +%s)
parts="package nbval-native nbval-forced"

# `make -n test` (a dry run: tests/test_readme.py does one while the real parts may be running)
# reaches this script, since its recipe names $(MAKE): print each part's commands and touch no
# log, instead of overwriting the logs of a running `make test`
first_flags=${MAKEFLAGS%% *}
case "$first_flags" in
    -*|"") ;;
    *n*)
        for part in $parts; do
            $make_cmd --no-print-directory -n "test-$part" NBVAL_PROCS="OMP_NUM_THREADS=1 STLLR_WORKERS=1"
        done
        exit 0 ;;
esac
mkdir -p "$logs"

if [ "${TEST_PARALLEL:-1}" = "1" ]; then
    echo ">> $parts side by side (logs: $logs/<part>.log, printed when all end)"
    for part in $parts; do
        # side by side, each notebook part is one process with one thread (see NBVAL_PROCS)
        ( $make_cmd --no-print-directory "test-$part" NBVAL_PROCS="OMP_NUM_THREADS=1 STLLR_WORKERS=1" \
            > "$logs/$part.log" 2>&1; echo $? > "$logs/$part.rc" ) &
    done
    wait
    for part in $parts; do
        cat "$logs/$part.log"
        [ "$(cat "$logs/$part.rc")" = "0" ] || failed="$failed $part"
    done
else
    for part in $parts; do
        $make_cmd --no-print-directory "test-$part" || failed="$failed $part"
    done
fi

seconds=$(( $(date +%s) - start ))
if [ -n "$failed" ]; then
    echo ">> make test FAILED in:$failed (after ${seconds} s; one part alone: make test-<part>)"
    exit 1
fi
echo ">> make test: all parts passed ($parts) in ${seconds} s"
