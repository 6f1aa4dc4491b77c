# vmbuild_exec COMMAND [ARG]...: how the host controller runs every command in the guest.
#
# Sourced by the guest's /bin/sh (dash) in the command line the host sends:
#     . /usr/lib/vmbuild/exec.sh; vmbuild_exec 'argv0' 'argv1' ...
# (one shell per command, no extra exec: under emulation every exec costs milliseconds).
# Runs COMMAND as root with the guest tools on PATH and in /scratch, and passes its exit
# status through. When COMMAND fails, leaves a note in /run/vmbuild/fault that the host
# reads to tell a plain failure from "out of memory" or "scratch disk full": the total
# number of OOM kills since boot (the host remembers the previous total), the last OOM
# victim, and the scratch disk's free and total blocks.
vmbuild_exec() {
    export PATH=/usr/bin:/usr/sbin:/bin:/sbin HOME=/root
    : > /run/vmbuild/seen  # tells init that the controller is here (see init)
    cd /scratch 2>/dev/null || cd /
    # dropbear runs at -1000 so that it survives memory pressure; commands do not.
    echo 0 > /proc/self/oom_score_adj
    "$@"
    vmbuild_status=$?
    if [ "$vmbuild_status" -ne 0 ]; then
        vmbuild_fault "$vmbuild_status" > /run/vmbuild/fault
    fi
    return "$vmbuild_status"
}

vmbuild_fault() {
    echo "status=$1"
    while read -r key value; do
        if [ "$key" = oom_kill ]; then echo "oom_kills=$value"; fi
    done < /proc/vmstat
    echo "oom_victim=$(dmesg | grep -o 'Killed process [0-9]* ([^)]*)' | tail -n 1)"
    if grep -q ' /scratch ' /proc/mounts; then
        echo "scratch=$(stat -f -c '%a %b %S' /scratch)"
    fi
}
