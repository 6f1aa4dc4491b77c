# vmbuild's nix-shell rc file: the image's Cmd runs the shell with it, as nix-shell
# does: the setup file, the prompt, the shellHook, then the command (if any) and exit.
# @shell@ and @setup@ are filled in when the image is built; the command comes after.
dontAddDisableDepTrack=1
# shellcheck disable=SC1091
[ -e @setup@ ] && . @setup@
SHELL=@shell@
BASH=@shell@
set +e
if [ -n "${PS1:-}" ] && [ -z "${NIX_SHELL_PRESERVE_PROMPT:-}" ]; then
    PS1='\n\[\033[1;32m\][nix-shell:\w]\$\[\033[0m\] '
fi
if [ "$(type -t runHook)" = function ]; then
    runHook shellHook
fi
shopt -u nullglob
shopt -s execfail
