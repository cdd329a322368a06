/* bench_alu.S: ALU benchmark, all in assembly: n iterations of aghi/aghi/brctg (n from "n=" on the command
 * line, default 100000000), prints the two sums and ends in a disabled wait with address 0xfff. */
#include "asm.h"

    .text
    .globl  main
    .type   main,@function
main:                                   /* int main(const char *cmdline) */
    stmg    %r6,%r15,48(%r15)
    aghi    %r15,-STACK_FRAME_OVERHEAD
    larl    %r3,key_n
    llilf   %r4,100000000
    brasl   %r14,cmdline_number         /* r2 = n */
    ltgr    %r6,%r2
    jnz     1f
    lghi    %r6,1                       /* n = 0 would run 2**64 times */
1:  lgr     %r1,%r6
    lghi    %r7,0
    lghi    %r8,0
    .globl  alu_loop
alu_loop:
    aghi    %r7,1
    aghi    %r8,3
    brctg   %r1,alu_loop
    larl    %r2,fmt
    lgr     %r3,%r6
    lgr     %r4,%r7
    lgr     %r5,%r8
    brasl   %r14,printf
    lghi    %r2,0xfff
    brasl   %r14,disabled_wait

    .section .rodata
key_n:
    .asciz  "n"
fmt:
    .asciz  "bench_alu: n=%lu a=%lu b=%lu\n"

    .section .note.GNU-stack,"",@progbits
