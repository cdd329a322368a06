/* canary_loop.S: void canary_loop(uint64_t *page, uint64_t canary): the canary guest's registers and its
 * tight store loop (see canary.c); never returns. */
#include "asm.h"

    .text
    .globl  canary_loop
    .type   canary_loop,@function
canary_loop:
    lgr     %r6,%r3                     /* r6 = C, r7..r13 = C ^ 1 .. C ^ 7 */
    lgr     %r7,%r3
    xilf    %r7,1
    lgr     %r8,%r3
    xilf    %r8,2
    lgr     %r9,%r3
    xilf    %r9,3
    lgr     %r10,%r3
    xilf    %r10,4
    lgr     %r11,%r3
    xilf    %r11,5
    lgr     %r12,%r3
    xilf    %r12,6
    lgr     %r13,%r3
    xilf    %r13,7
    lgr     %r1,%r3                     /* f0, f2, f4, f6 = C ^ 8 .. C ^ 11 */
    xilf    %r1,8
    ldgr    %f0,%r1
    lgr     %r1,%r3
    xilf    %r1,9
    ldgr    %f2,%r1
    lgr     %r1,%r3
    xilf    %r1,10
    ldgr    %f4,%r1
    lgr     %r1,%r3
    xilf    %r1,11
    ldgr    %f6,%r1
    lghi    %r0,0                       /* DIAGNOSE 0x9C shows the host r0 */
    lghi    %r1,0
0:  lghi    %r5,64                      /* passes between yields */
1:  lgr     %r3,%r2
    lghi    %r4,64                      /* 64 x 64 bytes: the page */
2:  stg     %r6,0(%r3)
    stg     %r6,8(%r3)
    stg     %r6,16(%r3)
    stg     %r6,24(%r3)
    stg     %r6,32(%r3)
    stg     %r6,40(%r3)
    stg     %r6,48(%r3)
    stg     %r6,56(%r3)
    la      %r3,64(%r3)
    brctg   %r4,2b
    brctg   %r5,1b
    diag    %r0,%r0,0x9c                /* yield: a PV notification, the guest goes on */
    j       0b

    .section .note.GNU-stack,"",@progbits
