/* probe.S: the console tests' guest. Counts to 5 through a call, tries an Ultravisor call (an operation
 * exception without a UV), loads a doubleword from its own "secret" page, then stops cleanly.
 *
 * Protocol: every program interruption lands in pgm_handler, which copies the interruption code to r7,
 * counts it in pgm_count and resumes at the address in r13. Expected end: disabled wait 0xfff (clean),
 * r2 = 5, counter = 5, calls = 5, r7 = 1 (operation exception from the UVC) unless the secret page was
 * made secure, then r7 = 0x3d. Built by build.py with the s390x cross toolchain (linked at 0x20000).
 */
        .section .text, "ax"
        .globl  _start
_start:
        larl    %r1, pgm_psw
        mvc     0x1d0(16,%r0), 0(%r1)           /* program new PSW -> pgm_handler */
        larl    %r15, stack_end
        lghi    %r2, 0
        larl    %r3, counter
        .globl  loop
loop:
        aghi    %r2, 1
        stg     %r2, 0(%r3)                     /* the watched store */
        brasl   %r14, bump
        cghi    %r2, 5
        jl      loop
        .globl  do_uvc
do_uvc:
        larl    %r4, uvcb
        larl    %r13, after_uvc
        lghi    %r0, 0
        .insn   rrf, 0xb9a40000, %r0, %r4, 0, 0 /* UVC Query Ultravisor Information */
        .globl  after_uvc
after_uvc:
        larl    %r8, secret
        larl    %r13, after_secret
        lg      %r9, 0(%r8)                     /* host access to the secret page */
        .globl  after_secret
after_secret:
        larl    %r1, done_psw
        lpswe   0(%r1)

        .globl  bump
bump:
        larl    %r5, calls
        lg      %r6, 0(%r5)
        aghi    %r6, 1
        stg     %r6, 0(%r5)
        br      %r14

        .globl  pgm_handler
pgm_handler:
        lh      %r7, 0x8e(%r0)                  /* program-interruption code */
        larl    %r5, pgm_count
        lg      %r6, 0(%r5)
        aghi    %r6, 1
        stg     %r6, 0(%r5)
        br      %r13

        .balign 8
pgm_psw:
        .quad   0x0000000180000000, pgm_handler
done_psw:
        .quad   0x0002000180000000, 0xfff
        .balign 8
        .globl  uvcb
uvcb:
        .short  0x120, 0x0001, 0, 0             /* len, cmd (Query), rc, rrc */
        .fill   0x118, 1, 0

        .section .data, "aw"
        .globl  counter, calls, pgm_count
counter:
        .quad   0
calls:
        .quad   0
pgm_count:
        .quad   0

        .section .secret, "aw"
        .globl  secret
secret:
        .quad   0x5ec2e7da7a000001

        .section .stack, "aw", @nobits
        .fill   0x1000, 1, 0
stack_end:
