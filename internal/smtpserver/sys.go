package smtpserver

import "syscall"

const syscallEMFILE = syscall.EMFILE
