# vmbuild's nix-shell setup file: sourced by the rc file and by buildDerivation.
# It defines runHook, genericBuild and the default phases; it changes no shell options.
# A recipe overrides a phase by giving a variable of the phase's name (its text is
# eval'ed instead of the function), skips one with its dont*/do* switch, and adds
# pre*/post* hooks (strings or functions) that runHook runs around the phase.

# the shell make runs recipes with: this bash (the user's login shell may be /noshell)
export SHELL="${BASH:-/bin/sh}"
: "${outputs:=out}"
: "${prefix:=${out:-}}"

# runHook NAME [ARGS]: each function or string in the array NAMEHooks, then the
# function or variable NAME itself (a variable's text is eval'ed).
_nixShellEval() {
    if declare -F "$1" >/dev/null; then
        "$@"
    elif [ -n "${!1:-}" ]; then
        eval "${!1}"
    fi
}

runHook() {
    local hookName="$1" hook
    shift
    local hooksArray="${hookName}Hooks[@]"
    for hook in "${!hooksArray}"; do
        if declare -F "$hook" >/dev/null; then "$hook" "$@"; else eval "$hook"; fi
    done
    _nixShellEval "$hookName" "$@"
    return 0
}

# unpackFile FILE: a directory is copied here (writable), a tarball unpacked here.
unpackFile() {
    local file="$1"
    echo "unpacking source archive $file"
    if [ -d "$file" ]; then
        cp -pr -- "$file" "$(basename -- "$file")"
    else
        tar -xf "$file" --warning=no-timestamp
    fi
}

unpackPhase() {
    runHook preUnpack
    if [ -z "${srcs:-}" ]; then
        if [ -z "${src:-}" ]; then
            echo "unpackPhase: the recipe has no src (set dontUnpack = true to skip)" >&2
            return 1
        fi
        srcs="$src"
    fi
    local before after dir new=()
    before="$(ls -A)"
    local s
    for s in $srcs; do
        unpackFile "$s"
    done
    if [ -z "${sourceRoot:-}" ]; then
        after="$(ls -A)"
        while IFS= read -r dir; do
            if [ -n "$dir" ] && [ -d "$dir" ] && ! grep -qxF -- "$dir" <<<"$before"; then
                new+=("$dir")
            fi
        done <<<"$after"
        if [ "${#new[@]}" -ne 1 ]; then
            echo "unpackPhase: the source made ${#new[@]} directories, not one; set sourceRoot" >&2
            return 1
        fi
        sourceRoot="${new[0]}"
    fi
    echo "source root is $sourceRoot"
    [ -n "${dontMakeSourcesWritable:-}" ] || chmod -R u+w -- "$sourceRoot"
    runHook postUnpack
}

patchPhase() {
    runHook prePatch
    local p
    for p in ${patches:-}; do
        echo "applying patch $p"
        case "$p" in
            *.gz) gzip -dc -- "$p" ;;
            *.bz2) bzip2 -dc -- "$p" ;;
            *.xz) xz -dc -- "$p" ;;
            *) cat -- "$p" ;;
        esac | patch ${patchFlags:--p1}
    done
    runHook postPatch
}

configurePhase() {
    runHook preConfigure
    if [ -z "${configureScript:-}" ] && [ -x ./configure ]; then
        configureScript=./configure
    fi
    if [ -n "${configureScript:-}" ]; then
        local flags=()
        [ -n "${dontAddPrefix:-}" ] || [ -z "$prefix" ] || flags+=("${prefixKey:---prefix=}$prefix")
        if [ -z "${dontAddDisableDepTrack:-}" ] && [ -f "$configureScript" ] &&
            grep -q dependency-tracking -- "$configureScript"; then
            flags+=(--disable-dependency-tracking)
        fi
        echo "configure flags: ${flags[*]}${configureFlags:+ $configureFlags}"
        # shellcheck disable=SC2086
        $configureScript "${flags[@]}" ${configureFlags:-}
    else
        echo "no configure script, doing nothing"
    fi
    runHook postConfigure
}

_nixShellHasMakefile() {
    [ -n "${makefile:-}" ] || [ -e Makefile ] || [ -e makefile ] || [ -e GNUmakefile ]
}

_nixShellMake() {
    # shellcheck disable=SC2086
    make ${makefile:+-f "$makefile"} ${enableParallelBuilding:+-j"${NIX_BUILD_CORES:-1}"} \
        SHELL="$SHELL" ${makeFlags:-} "$@"
}

buildPhase() {
    runHook preBuild
    if [ -z "${makeFlags:-}" ] && ! _nixShellHasMakefile; then
        echo "no Makefile or custom buildPhase, doing nothing"
    else
        # shellcheck disable=SC2086
        _nixShellMake ${buildFlags:-}
    fi
    runHook postBuild
}

checkPhase() {
    runHook preCheck
    if ! _nixShellHasMakefile; then
        echo "no Makefile or custom checkPhase, doing nothing"
    else
        local target="${checkTarget:-}"
        if [ -z "$target" ]; then
            if make -n ${makefile:+-f "$makefile"} check >/dev/null 2>&1; then
                target=check
            elif make -n ${makefile:+-f "$makefile"} test >/dev/null 2>&1; then
                target=test
            fi
        fi
        if [ -z "$target" ]; then
            echo "no check or test target, doing nothing"
        else
            # shellcheck disable=SC2086
            _nixShellMake ${checkFlags:-} $target
        fi
    fi
    runHook postCheck
}

installPhase() {
    runHook preInstall
    [ -z "$prefix" ] || mkdir -p -- "$prefix"
    if [ -z "${makeFlags:-}" ] && ! _nixShellHasMakefile; then
        echo "no Makefile or custom installPhase, doing nothing"
    else
        # shellcheck disable=SC2086
        _nixShellMake ${installFlags:-} ${installTargets:-install}
    fi
    runHook postInstall
}

fixupPhase() {
    runHook preFixup
    local output
    for output in $outputs; do
        if [ -e "${!output:-}" ]; then
            chmod -R u+w,u-s,g-s -- "${!output}"
        fi
    done
    runHook postFixup
}

installCheckPhase() {
    runHook preInstallCheck
    if _nixShellHasMakefile; then
        # shellcheck disable=SC2086
        _nixShellMake ${installCheckFlags:-} ${installCheckTarget:-installcheck}
    fi
    runHook postInstallCheck
}

# Whether genericBuild skips PHASE: its dont*/do* switch says so.
_nixShellSkip() {
    case "$1" in
        unpackPhase) [ -n "${dontUnpack:-}" ] ;;
        patchPhase) [ -n "${dontPatch:-}" ] ;;
        configurePhase) [ -n "${dontConfigure:-}" ] ;;
        buildPhase) [ -n "${dontBuild:-}" ] ;;
        checkPhase) [ -z "${doCheck:-}" ] ;;
        installPhase) [ -n "${dontInstall:-}" ] ;;
        fixupPhase) [ -n "${dontFixup:-}" ] ;;
        installCheckPhase) [ -z "${doInstallCheck:-}" ] ;;
        *) return 1 ;;
    esac
}

# genericBuild: buildCommand if the recipe has one, else each phase of $phases (by
# default the stdenv order) that is not skipped, a variable of its name winning over
# the function; after unpackPhase it enters the source root.
genericBuild() {
    if [ -n "${buildCommandPath:-}" ]; then
        # shellcheck disable=SC1090
        . "$buildCommandPath"
        return
    fi
    if [ -n "${buildCommand:-}" ]; then
        eval "$buildCommand"
        return
    fi
    local phase
    local list="${phases:-${prePhases:-} unpackPhase patchPhase ${preConfigurePhases:-} configurePhase ${preBuildPhases:-} buildPhase checkPhase ${preInstallPhases:-} installPhase ${preFixupPhases:-} fixupPhase installCheckPhase ${postPhases:-}}"
    for phase in $list; do
        if _nixShellSkip "$phase"; then
            continue
        fi
        echo "Running phase: $phase"
        if [ -n "${!phase:-}" ]; then
            eval "${!phase}"
        else
            "$phase"
        fi
        if [ "$phase" = unpackPhase ]; then
            cd -- "${sourceRoot:-.}"
        fi
    done
}
