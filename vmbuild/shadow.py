"""shadowSetup: the manual's helper that prepares an image for shadow's user tools.

A POSIX sh fragment (it runs under the guest's busybox sh or the image's own shell) that
creates /etc/passwd, /etc/shadow, /etc/group, /etc/gshadow, /etc/pam.d/other and
/etc/login.defs only where they do not exist yet. In a runAsRoot script the guest's
useradd/groupadd are on PATH after it.
"""

SHADOW_SETUP = """\
mkdir -p /etc/pam.d
if [ ! -f /etc/passwd ]; then
  echo "root:x:0:0::/root:/bin/sh" > /etc/passwd
  echo "root:!x:::::::" > /etc/shadow
fi
if [ ! -f /etc/group ]; then
  echo "root:x:0:" > /etc/group
  echo "root:x::" > /etc/gshadow
fi
if [ ! -f /etc/pam.d/other ]; then
  printf '%s\\n' 'account sufficient pam_unix.so' 'auth sufficient pam_rootok.so' \\
    'password requisite pam_unix.so nullok yescrypt' 'session required pam_unix.so' \\
    > /etc/pam.d/other
fi
[ -f /etc/login.defs ] || touch /etc/login.defs
"""
