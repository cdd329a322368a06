/* asm.h: assembler macros for guest probes: PROBE/INSN labels and a switch to problem state. */
#ifndef ZUV_ASM_H
#define ZUV_ASM_H
#include "lowcore.h"

/* PROBE name: a global function; INSN name: the global label name_insn on the instruction under test. */
    .macro  PROBE name
    .globl  \name, \name\()_insn
    .type   \name,@function
\name:
    .endm

    .macro  INSN name
\name\()_insn:
    .endm

/* Continue at the next instruction in problem state (the PSW mask otherwise unchanged); uses r0, r1. */
    .macro  PROBLEM_STATE
    aghi    %r15,-16
    epsw    %r0,%r1
    sllg    %r0,%r0,32
    llgfr   %r1,%r1
    ogr     %r0,%r1
    oihh    %r0,0x0001              /* PSW_MASK_PSTATE */
    stg     %r0,0(%r15)
    larl    %r1,9f
    stg     %r1,8(%r15)
    lpswe   0(%r15)
9:  aghi    %r15,16
    .endm

#endif
