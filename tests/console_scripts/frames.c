/* frames.c: the console's unwinding tests' guest: three nested calls compiled with the s390x back chain and
 * DWARF CFI (.eh_frame), so bt can be checked both ways. Expected end: disabled wait 0xfff, depth = 43.
 * Built by build.py with the s390x cross toolchain (linked at 0x20000 by frames.ld). */
volatile long depth;

__attribute__((noinline)) long leaf(long x)
{
    depth = x;
    return x + 1;
}

__attribute__((noinline)) long middle(long x)
{
    long r = leaf(x * 2);
    depth += r;
    return r * 3;
}

__attribute__((noinline)) long outer(long x)
{
    long r = middle(x + 1);
    return r + depth;
}

void cmain(void)
{
    depth = outer(5) - depth;
}

__asm__(
    "        .section .text.start, \"ax\"\n"
    "        .globl  _start\n"
    "_start: larl    %r15, stack_end\n"
    "        aghi    %r15, -160\n"
    "        xc      0(8,%r15), 0(%r15)\n"
    "        brasl   %r14, cmain\n"
    "        larl    %r1, done_psw\n"
    "        lpswe   0(%r1)\n"
    "        .balign 8\n"
    "done_psw: .quad 0x0002000180000000, 0xfff\n"
    "        .section .bss.stack, \"aw\", @nobits\n"
    "        .balign 8\n"
    "        .fill   0x1000, 1, 0\n"
    "        .globl  stack_end\n"
    "stack_end:\n"
    "        .text\n");
