/* access.S: a load and a store whose instruction addresses the DAT test knows (labels t_load_insn, t_store_insn). */
#include "asm.h"

    .text
/* uint64_t t_load(uint64_t va) */
PROBE t_load
INSN t_load
    lg      %r2,0(%r2)
    br      %r14
/* void t_store(uint64_t va, uint64_t value) */
PROBE t_store
INSN t_store
    stg     %r3,0(%r2)
    br      %r14

    .section .note.GNU-stack,"",@progbits
