/* probes.S: SVC instructions, directly, as EXECUTE targets and from problem state. */
#include "asm.h"

    .text
PROBE t_svc0
INSN t_svc0
    svc     0
    br      %r14
PROBE t_svc5
INSN t_svc5
    svc     5
    br      %r14
PROBE t_svc254
INSN t_svc254
    svc     254
    br      %r14
/* EX ORs bits 56-63 of r1 into the second byte of the target: svc 0 becomes svc 0x42. */
PROBE t_svc_ex
    lghi    %r1,0x42
    larl    %r2,svc_target
INSN t_svc_ex
    ex      %r1,0(%r2)
    br      %r14
PROBE t_svc_exrl
    lghi    %r1,0x43
INSN t_svc_exrl
    exrl    %r1,svc_target
    br      %r14
/* From problem state; SVC 255 asks the hook to return to supervisor state. */
PROBE t_svc_problem
    PROBLEM_STATE
INSN t_svc_problem
    svc     7
    svc     255
    br      %r14
svc_target:
    svc     0

    .section .note.GNU-stack,"",@progbits
