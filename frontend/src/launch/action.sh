# Action script of the Rust apptainer: run by the image's /bin/sh as
#   /bin/sh -c "<this script>" /.singularity.d/actions/<action> [args...]
# POSIX sh only (dash, busybox ash, bash as sh). It gives the container its environment and
# then replaces itself with the payload. Inputs, removed from the environment on entry:
#   __APPTAINER_ENV_NAMES  names of the variables the frontend set (the "host snapshot")
#   __APPTAINER_OVERRIDES  shell text of `export K=...` lines (APPTAINERENV_K, --env, ...)
#   __APPTAINER_QUIET      non-empty to hide INFO messages
# Rules (the reference's): the image's env scripts see none of the snapshot variables except
# PWD and HOME; afterwards every snapshot variable the image did not define is restored, and
# a snapshot variable left empty is unset. Overrides are applied right after 99-base.sh, so
# the image beats the host and the overrides beat the image.

__ap_names=${__APPTAINER_ENV_NAMES-}
__ap_overrides=${__APPTAINER_OVERRIDES-}
__ap_quiet=${__APPTAINER_QUIET-}
unset __APPTAINER_ENV_NAMES __APPTAINER_OVERRIDES __APPTAINER_QUIET
__ap_cmd=${APPTAINER_COMMAND-}
# Shells give PS1 a default of their own; only an exported one counts.
case " $__ap_names " in
*" PS1 "*) ;;
*) unset PS1 ;;
esac
__ap_default_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

__ap_info() {
    test -n "$__ap_quiet" || printf 'INFO:    %s\n' "$1" >&2
}

__ap_error() {
    printf 'ERROR:   %s\n' "$1" >&2
}

# Appends the default directories missing from PATH (the reference's `fixpath`).
__ap_fixpath() {
    __ap_p=${PATH-}
    __ap_ifs=$IFS
    IFS=:
    for __ap_d in $__ap_default_path; do
        case ":$__ap_p:" in
        *":$__ap_d:"*) ;;
        *) __ap_p=${__ap_p:+$__ap_p:}$__ap_d ;;
        esac
    done
    IFS=$__ap_ifs
    PATH=$__ap_p
    export PATH
}

__ap_injected=
__ap_inject() {
    test -z "$__ap_injected" || return 0
    __ap_injected=1
    test "${PATH+set}" = set || export PATH="$__ap_default_path"
    eval "$__ap_overrides"
}

# Names come from the frontend, which only passes valid shell identifiers.
set -f
for __ap_n in $__ap_names; do
    eval "__ap_v_$__ap_n=\${$__ap_n-}"
    case $__ap_n in
    PWD | HOME | OPTIND | SINGULARITY_APPNAME | SINGULARITY_SHELL | APPTAINER_NAME | APPTAINER_CONTAINER) ;;
    *) unset "$__ap_n" ;;
    esac
done
set +f

if test -d /.singularity.d/env; then
    for __ap_f in /.singularity.d/env/*.sh; do
        test -f "$__ap_f" || continue
        case $__ap_f in
        /.singularity.d/env/90-environment.sh)
            test "${PATH+set}" = set || __ap_fixpath
            . "$__ap_f"
            ;;
        /.singularity.d/env/10-docker2singularity.sh | /.singularity.d/env/10-docker.sh)
            . "$__ap_f"
            __ap_fixpath
            ;;
        /.singularity.d/env/99-base.sh)
            . "$__ap_f"
            __ap_inject
            ;;
        *)
            . "$__ap_f"
            ;;
        esac
    done
elif test -f /environment; then
    . /environment
    __ap_fixpath
fi
# Images without 99-base.sh still get their overrides.
__ap_inject

if ! test -f /.singularity.d/env/99-runtimevars.sh; then
    if test -n "${SING_USER_DEFINED_PREPEND_PATH-}"; then
        PATH="$SING_USER_DEFINED_PREPEND_PATH:$PATH"
    fi
    if test -n "${SING_USER_DEFINED_APPEND_PATH-}"; then
        PATH="$PATH:$SING_USER_DEFINED_APPEND_PATH"
    fi
    if test -n "${SING_USER_DEFINED_PATH-}"; then
        PATH=$SING_USER_DEFINED_PATH
    fi
    export PATH
fi
unset SING_USER_DEFINED_PREPEND_PATH SING_USER_DEFINED_APPEND_PATH SING_USER_DEFINED_PATH

set -f
for __ap_n in $__ap_names; do
    eval "__ap_set=\${$__ap_n+x}"
    if test -z "$__ap_set"; then
        eval "export $__ap_n=\"\${__ap_v_$__ap_n}\""
    else
        eval "__ap_val=\${$__ap_n}"
        test -n "$__ap_val" || unset "$__ap_n"
    fi
    unset "__ap_v_$__ap_n"
done
set +f

test -n "${PS1-}" || export PS1="Apptainer> "
if test -z "${PROMPT_COMMAND-}"; then
    export PROMPT_COMMAND="PS1=\"$PS1\"; unset PROMPT_COMMAND"
else
    export PROMPT_COMMAND="$PROMPT_COMMAND; PROMPT_COMMAND=\"\${PROMPT_COMMAND%%; PROMPT_COMMAND=*}\"; PS1=\"$PS1\""
fi
export APPTAINER_ENVIRONMENT="${APPTAINER_ENVIRONMENT:-/.singularity.d/env/91-environment.sh}"
export SINGULARITY_ENVIRONMENT="$APPTAINER_ENVIRONMENT"

__ap_app=${SINGULARITY_APPNAME-}
case $__ap_cmd in
exec)
    case $1 in
    */*) test -x "$1" && ! test -d "$1" ;;
    *) command -v "$1" >/dev/null 2>&1 ;;
    esac || {
        printf 'FATAL:   "%s": executable file not found in $PATH\n' "$1" >&2
        exit 255
    }
    exec "$@"
    ;;
shell)
    if test -n "${SINGULARITY_SHELL-}" && test -x "$SINGULARITY_SHELL"; then
        exec "$SINGULARITY_SHELL" "$@"
    elif test -x /bin/bash; then
        export SHELL=/bin/bash
        exec /bin/bash --norc "$@"
    elif test -x /bin/sh; then
        export SHELL=/bin/sh
        exec /bin/sh "$@"
    fi
    __ap_error "/bin/sh does not exist in container"
    exit 1
    ;;
run)
    if test -n "$__ap_app"; then
        if test -x "/scif/apps/$__ap_app/scif/runscript"; then
            exec "/scif/apps/$__ap_app/scif/runscript" "$@"
        fi
        __ap_error "no runscript for contained app: $__ap_app"
        exit 1
    elif test -x /.singularity.d/runscript; then
        exec /.singularity.d/runscript "$@"
    elif test -x /apptainer; then
        exec /apptainer "$@"
    elif test -x /bin/sh; then
        __ap_info "No runscript found in container, executing /bin/sh"
        exec /bin/sh "$@"
    fi
    __ap_error "No runscript and no /bin/sh executable found in container, aborting"
    exit 1
    ;;
test)
    if test -n "$__ap_app"; then
        if test -x "/scif/apps/$__ap_app/scif/test"; then
            exec "/scif/apps/$__ap_app/scif/test" "$@"
        fi
        __ap_error "No tests for contained app: $__ap_app"
        exit 1
    elif test -x /.singularity.d/test; then
        exec /.singularity.d/test "$@"
    fi
    __ap_info "No test script found in container, exiting"
    exit 0
    ;;
start)
    # An instance without a startscript just stays up, as in the reference.
    if test -x /.singularity.d/startscript; then
        exec /.singularity.d/startscript "$@"
    fi
    exit 0
    ;;
*)
    __ap_error "Unknown action $__ap_cmd"
    exit 1
    ;;
esac
