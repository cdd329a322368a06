/* bench_store.c: store benchmark: n=NUMBER rounds (default 20000) of 8192 doubleword stores into 64 KiB of
 * data on their own pages; prints a checksum and ends in a disabled wait with address 0xfff. */
#include "runtime.h"

#define WORDS 8192

extern void store_rounds(uint64_t *buf, uint64_t words, uint64_t rounds);

static uint64_t buf[WORDS] ALIGNED(4096);

int main(const char *cmdline)
{
    uint64_t rounds = cmdline_number(cmdline, "n", 20000), sum = 0;
    unsigned i;

    if (rounds == 0)
        rounds = 1;
    store_rounds(buf, WORDS, rounds);
    for (i = 0; i < WORDS; i++)
        sum += buf[i];
    printf("bench_store: n=%lu words=%u stores=%lu checksum=%lu\n", rounds, WORDS, rounds * WORDS, sum);
    disabled_wait(0xfff);
}
