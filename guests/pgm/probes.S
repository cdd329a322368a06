/* probes.S: one small routine per program-interruption condition; label NAME_insn marks the instruction. */
#include "asm.h"

    .text
/* Operation exception: unassigned opcodes of each length (the length comes from the first two bits). */
PROBE t_op2
INSN t_op2
    .short  0x0000
    br      %r14
PROBE t_op4
INSN t_op4
    .long   0x52000000
    br      %r14
PROBE t_op6
INSN t_op6
    .short  0xff00, 0x0000, 0x0000
    br      %r14

/* Privileged operation from problem state. */
PROBE t_priv_ptlb
    PROBLEM_STATE
INSN t_priv_ptlb
    ptlb
    br      %r14
PROBE t_priv_lctlg
    PROBLEM_STATE
INSN t_priv_lctlg
    lctlg   %c0,%c0,0(%r15)
    br      %r14
PROBE t_priv_servc
    lghi    %r2,0
    lghi    %r3,0
    PROBLEM_STATE
INSN t_priv_servc
    .insn   rre,0xb2200000,%r2,%r3
    br      %r14

/* Execute exception: the target of EXECUTE is itself an execute-type instruction. */
PROBE t_execute
    larl    %r1,0f
INSN t_execute
    ex      %r0,0(%r1)
    br      %r14
0:  ex      %r0,0(%r1)

/* Specification: odd register of an even-odd pair; LPSWE operand not on a doubleword boundary. */
PROBE t_spec_dr
    lghi    %r1,1
    lghi    %r2,1
INSN t_spec_dr
    .insn   rr,0x1d00,%r1,%r2       /* dr %r1,%r2 (the assembler refuses the odd register) */
    br      %r14
PROBE t_spec_lpswe_align
    larl    %r1,spec_psw
INSN t_spec_lpswe_align
    lpswe   4(%r1)
    br      %r14

/* Addressing: operand far beyond the end of storage (1 TiB), fetch and store. */
PROBE t_addr_load
    llihl   %r1,0x0100
INSN t_addr_load
    lg      %r2,0(%r1)
    br      %r14
PROBE t_addr_store
    llihl   %r1,0x0100
INSN t_addr_store
    stg     %r2,8(%r1)
    br      %r14

/* Fixed-point divide (divisor 0, quotient too large) and fixed-point overflow (program mask bit 20 on). */
PROBE t_divide_zero
    lghi    %r2,0
    lghi    %r3,100
    lghi    %r4,0
INSN t_divide_zero
    dsgr    %r2,%r4
    br      %r14
PROBE t_divide_overflow
    lghi    %r2,1
    lghi    %r3,0
    lghi    %r4,1
INSN t_divide_overflow
    dlgr    %r2,%r4
    br      %r14
PROBE t_overflow
    llilh   %r0,0x0800              /* program mask: fixed-point overflow enabled */
    spm     %r0
    lghi    %r2,-1
    srlg    %r2,%r2,1               /* 0x7fffffffffffffff: the largest positive doubleword */
    lghi    %r3,1
INSN t_overflow
    agr     %r2,%r3
    br      %r14

/* Data exceptions: invalid decimal digit (CVB), AFP register with CR0 AFP off, vector with CR0 vector
 * off, and compare-and-trap. */
PROBE t_data_decimal
    larl    %r1,bad_packed
INSN t_data_decimal
    cvb     %r2,0(%r1)
    br      %r14
PROBE t_data_afp
INSN t_data_afp
    ldr     %f1,%f3
    br      %r14
PROBE t_data_vector
INSN t_data_vector
    vlr     %v1,%v2
    br      %r14
PROBE t_data_trap
    lghi    %r2,5
    lghi    %r3,5
INSN t_data_trap
    cgrt    %r2,%r3,8
    br      %r14

/* Early specification exception: LPSWE of a PSW with bit 12 set (ILC 0, old PSW = the invalid PSW). */
PROBE t_spec_psw_bit12
    larl    %r1,bit12_psw
    larl    %r2,0f
    stg     %r2,8(%r1)
INSN t_spec_psw_bit12
    lpswe   0(%r1)
0:  br      %r14

    .section .data
    .align  8
spec_psw:
    .quad   PSW_MASK_64, 0, 0
bit12_psw:
    .quad   0x0008000180000000, 0
bad_packed:
    .quad   0x00000000000000ac      /* digit 0xa: invalid; sign 0xc */

    .section .note.GNU-stack,"",@progbits
