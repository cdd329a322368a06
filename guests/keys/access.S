/* access.S: fetches and stores under a given PSW key (SPKA), and TPROT; labels mark the accesses. */
#include "asm.h"

    .text
/* uint64_t k_load(uint64_t addr, uint64_t key): fetch with PSW key (key >> 4). */
PROBE k_load
    spka    0(%r3)
INSN k_load
    lg      %r2,0(%r2)
    spka    0
    br      %r14
/* void k_store(uint64_t addr, uint64_t key, uint64_t value): store with PSW key (key >> 4). */
PROBE k_store
    spka    0(%r3)
INSN k_store
    stg     %r4,0(%r2)
    spka    0
    br      %r14
/* int k_tprot(uint64_t addr, uint64_t key): condition code of TPROT. */
PROBE k_tprot
INSN k_tprot
    tprot   0(%r2),0(%r3)
    ipm     %r2
    srl     %r2,28
    br      %r14

    .section .note.GNU-stack,"",@progbits
