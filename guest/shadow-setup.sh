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
  printf '%s\n' 'account sufficient pam_unix.so' 'auth sufficient pam_rootok.so' \
    'password requisite pam_unix.so nullok yescrypt' 'session required pam_unix.so' \
    > /etc/pam.d/other
fi
[ -f /etc/login.defs ] || touch /etc/login.defs
