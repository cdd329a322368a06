/* store_loop.S: the store-heavy inner loop of bench_store. */
#include "asm.h"

    .text
/* void store_rounds(uint64_t *buf, uint64_t words, uint64_t rounds): rounds times, for i = 0..words-1,
 * buf[i] = round + (words - i), round counting down from rounds to 1. words, rounds >= 1. */
    .globl  store_rounds
    .type   store_rounds,@function
store_rounds:
    stmg    %r6,%r7,48(%r15)
    lgr     %r0,%r4
0:  lgr     %r1,%r2
    lgr     %r5,%r3
1:  agrk    %r6,%r0,%r5
    stg     %r6,0(%r1)
    la      %r1,8(%r1)
    brctg   %r5,1b
    brctg   %r0,0b
    lmg     %r6,%r7,48(%r15)
    br      %r14

    .section .note.GNU-stack,"",@progbits
