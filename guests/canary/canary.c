/*
 * canary.c: a secure guest that holds a canary where a host must never see it, for the trust-boundary race
 * and model tests (docs/security.md).
 *
 * The canary is an 8-byte word C (canary.h). The guest fills page "hot" with C ^ 0 and page "cold" with
 * C ^ 0x10, prints both addresses, puts C ^ 1 .. C ^ 7 in r7-r13, C ^ 0 in r6 and C ^ 8 .. C ^ 11 in
 * f0, f2, f4, f6, and then rewrites the hot page with C ^ 0 in a tight loop for ever (canary_loop.S),
 * yielding with DIAGNOSE 0x9C after every 64 passes so that the host sees it run. Every C ^ i shares C's
 * first seven bytes, so a search for them finds any canary word or register.
 *
 * Protocol: the line "canary: hot 0x... cold 0x...\n" is printed before the loop starts.
 */
#include "runtime.h"
#include "canary.h"

static uint64_t hot[512] ALIGNED(4096);
static uint64_t cold[512] ALIGNED(4096);

void canary_loop(uint64_t *page, uint64_t canary) __attribute__((noreturn));

int main(const char *cmdline)
{
    int i;

    for (i = 0; i < 512; i++) {
        hot[i] = CANARY;
        cold[i] = CANARY ^ 0x10;
    }
    printf("canary: hot %#lx cold %#lx\n", (unsigned long)hot, (unsigned long)cold);
    canary_loop(hot, CANARY);
}
