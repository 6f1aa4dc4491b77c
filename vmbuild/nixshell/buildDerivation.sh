#!@shell@
# buildDerivation: the recipe's phases, in this shell's environment (see setup.sh).
set -eo pipefail
# shellcheck disable=SC1091
. @setup@
genericBuild
