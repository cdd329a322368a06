/* spin.S: a secondary CPU's busy loop with a recognisable r7, for STOP AND STORE STATUS. */
#include "asm.h"

    .text
/* void cpu1_spin(volatile uint64_t *flag): spin with r7 = 0x5157a7e5 until *flag != 0. */
PROBE cpu1_spin
    stmg    %r6,%r7,48(%r15)
    llilf   %r7,0x5157a7e5
INSN cpu1_spin
0:  ltg     %r0,0(%r2)
    je      0b
    .globl  cpu1_spin_end
cpu1_spin_end:
    lmg     %r6,%r7,48(%r15)
    br      %r14

    .section .note.GNU-stack,"",@progbits
