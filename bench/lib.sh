# Shared pieces of bench/run.sh (sourced, bash, as root): logging, the results file, running a
# command as the plain bench user, and timing with hyperfine or /usr/bin/time.
#
# Every measurement becomes one line of $RESULTS (tab-separated):
#   section  image  name  median_s  min_s  max_s  peak_rss_kib  runs  note
# A tool that fails writes "n/a" in the number columns and its first error line in `note`, so
# the report shows why instead of a number that was never measured.

say() { printf 'bench: %s\n' "$*" >&2; }
die() { printf 'bench: error: %s\n' "$*" >&2; exit 1; }

# record SECTION IMAGE NAME MEDIAN MIN MAX RSS RUNS NOTE
record() {
    local IFS=$'\t'
    printf '%s\n' "$*" >> "$RESULTS"
}

# record_na SECTION IMAGE NAME REASON: the row exists, with the reason instead of numbers.
record_na() {
    local reason=${4//$'\t'/ }
    say "$3 ($2): n/a: $reason"
    record "$1" "$2" "$3" n/a n/a n/a n/a 0 "$reason"
}

# first_error FILE: the most telling line of a failed command's output, on one line.
first_error() {
    local line
    line=$(grep -m1 -E 'FATAL|ERROR|[Ee]rror|[Ff]ailed|cannot|not implemented|denied|No such' "$1" 2>/dev/null || true)
    [ -n "$line" ] || line=$(grep -v '^[[:space:]]*$' "$1" 2>/dev/null | tail -n 1)
    [ -n "$line" ] || line="failed without output"
    printf '%s' "$line" | tr -d '\r' | tr '\t' ' ' | cut -c1-200
}

# as_user CMD...: run CMD as the plain bench user, with a clean environment.
as_user() {
    setpriv --reuid="$BENCH_USER" --regid="$BENCH_USER" --init-groups --reset-env -- "$@"
}

# run_as AS CMD...: AS is "user" (the plain bench user), "root", or "root-cgv1": root in a
# private mount namespace without the cgroup2 mount of a hybrid hierarchy, which crun refuses
# ("cgroups in hybrid mode not supported") while runc copes; the namespace is made once around
# the whole hyperfine run, so it costs nothing per timed start.
run_as() {
    local as=$1
    shift
    case $as in
        user) as_user env HOME="$BENCH_HOME" PATH=/usr/sbin:/usr/bin:/sbin:/bin "$@" ;;
        root) "$@" ;;
        root-cgv1) unshare -m sh -c 'umount /sys/fs/cgroup/unified 2>/dev/null; exec "$@"' sh "$@" ;;
        *) die "run_as: unknown mode $as" ;;
    esac
}

# probe AS NAME CMD: run CMD once (AS as for run_as); on failure print the error line
# and return 1. Every timed command is probed first, so a broken tool costs one run.
probe() {
    local as=$1 name=$2 cmd=$3 out
    out=$(mktemp "$WORK/probe.XXXXXX")
    chmod 0644 "$out"
    run_as "$as" sh -c "$cmd" > "$out" 2>&1 < /dev/null
    local rc=$?
    if [ $rc -ne 0 ]; then
        PROBE_ERROR="exit $rc: $(first_error "$out")"
        rm -f "$out"
        return 1
    fi
    rm -f "$out"
    return 0
}

# hyperfine_row SECTION IMAGE NAME AS RUNS WARMUP CMD: time CMD with hyperfine and record
# median, min and max. AS = user runs hyperfine itself as the bench user, so no wrapper process
# is inside the timed command. CMD runs as `sh FILE` with hyperfine's --shell=none: every row
# then includes one start of sh (about 1 ms, see the "host:" row), instead of hyperfine
# subtracting its estimate of a shell's start, which a loaded machine skews (minima of 0.0 ms).
hyperfine_row() {
    local section=$1 image=$2 name=$3 as=$4 runs=$5 warmup=$6 cmd=$7
    if ! probe "$as" "$name" "$cmd"; then
        record_na "$section" "$image" "$name" "$PROBE_ERROR"
        return 0
    fi
    local json script log=$WORK/hyperfine.log note=""
    json=$(mktemp "$WORK/hf.XXXXXX.json")
    script=$(mktemp "$WORK/cmd.XXXXXX.sh")
    printf '%s\n' "$cmd" > "$script"
    chmod 0666 "$json"
    chmod 0644 "$script"
    local hf=(hyperfine --style basic --shell=none --runs "$runs" --warmup "$warmup" --export-json "$json")
    # HF_PREPARE: a command hyperfine runs, untimed, before each timed run.
    [ -z "${HF_PREPARE:-}" ] || hf+=(--prepare "$HF_PREPARE")
    if ! run_hyperfine "$as" "$log" "${hf[@]}" "sh $script"; then
        # hyperfine hides the command's output: run it again until it fails, to show why.
        local reason _
        reason="hyperfine: $(first_error "$log")"
        reason=${reason%%. Use *}
        for _ in $(seq 20); do
            if ! probe "$as" "$name" "$cmd"; then
                record_na "$section" "$image" "$name" "fails intermittently, one failure: $PROBE_ERROR"
                return 0
            fi
        done
        # Twenty clean runs in a row: a transient cause (on this machine, others reinstalling
        # our binaries mid-run). Measure once more and say so; a second failure is final.
        say "$name ($image): one failed run, not reproduced in 20 tries; measuring again"
        if ! run_hyperfine "$as" "$log" "${hf[@]}" "sh $script"; then
            record_na "$section" "$image" "$name" "$reason"
            return 0
        fi
        note="measured again after one failed run that 20 retries did not reproduce ($reason)"
    fi
    local stats
    stats=$("$PYTHON" -c '
import json, statistics, sys
r = json.load(open(sys.argv[1]))["results"][0]
t = r["times"]
print("%.6f\t%.6f\t%.6f\t%d" % (statistics.median(t), min(t), max(t), len(t)))
' "$json")
    local med min max n
    IFS=$'\t' read -r med min max n <<< "$stats"
    say "$name ($image): median $(ms "$med") ms ($(ms "$min")-$(ms "$max"), $n runs)"
    record "$section" "$image" "$name" "$med" "$min" "$max" "" "$n" "$note"
    rm -f "$json" "$script"
}

# run_hyperfine AS LOG HYPERFINE-ARGS...: hyperfine as AS, its output in LOG.
run_hyperfine() {
    local as=$1 log=$2
    shift 2
    : > "$log"
    chmod 0666 "$log"
    run_as "$as" "$@" > "$log" 2>&1 < /dev/null
}

# ms SECONDS: milliseconds with one decimal, for log lines.
ms() { "$PYTHON" -c 'import sys; print("%.1f" % (float(sys.argv[1]) * 1000))' "$1"; }

# time_once AS CMD: run CMD under /usr/bin/time; sets T_ELAPSED (s) and T_RSS (KiB), or
# T_ERROR when the command failed.
time_once() {
    local as=$1 cmd=$2 tf out
    tf=$(mktemp "$WORK/time.XXXXXX")
    out=$(mktemp "$WORK/out.XXXXXX")
    chmod 0666 "$tf" "$out"
    T_ERROR=
    run_as "$as" /usr/bin/time -f '%e %M' -o "$tf" sh -c "$cmd" > "$out" 2>&1 < /dev/null
    local rc=$?
    if [ $rc -ne 0 ]; then
        T_ERROR="exit $rc: $(first_error "$out")"
    else
        read -r T_ELAPSED T_RSS < <(tail -n 1 "$tf")
    fi
    rm -f "$tf" "$out"
    [ $rc -eq 0 ]
}

# timed_rows SECTION IMAGE NAME AS RUNS SETUP CMD: eval SETUP (as root, untimed) then CMD
# RUNS times; record median/min/max elapsed and the highest peak RSS. /usr/bin/time's
# resolution is 10 ms, enough for pulls that take between 0.1 and 40 s.
timed_rows() {
    local section=$1 image=$2 name=$3 as=$4 runs=$5 setup=$6 cmd=$7
    local times=() rss=0 i
    for ((i = 0; i < runs; i++)); do
        eval "$setup" || die "setup for $name failed: $setup"
        if ! time_once "$as" "$cmd"; then
            record_na "$section" "$image" "$name" "$T_ERROR"
            return 1
        fi
        times+=("$T_ELAPSED")
        [ "$T_RSS" -gt "$rss" ] && rss=$T_RSS
    done
    local stats
    stats=$("$PYTHON" -c '
import statistics, sys
t = [float(x) for x in sys.argv[1:]]
print("%.3f\t%.3f\t%.3f" % (statistics.median(t), min(t), max(t)))
' "${times[@]}")
    local med min max
    IFS=$'\t' read -r med min max <<< "$stats"
    say "$name ($image): median ${med} s ($min-$max, $runs runs), peak RSS $((rss / 1024)) MiB"
    record "$section" "$image" "$name" "$med" "$min" "$max" "$rss" "$runs" ""
    return 0
}
