/* bench_sieve.c: sieve of Eratosthenes over n=NUMBER bytes (default 30000000) with DAT on: the array lives at
 * virtual 0x0020000000000000 (region-first index 1), mapped page by page onto storage above 16 MiB; prints
 * the number of primes below n and ends in a disabled wait with address 0xfff. */
#include "runtime.h"

#define RTE_I           0x20ULL
#define RTE_TT_R1       0x0cULL
#define RTE_TT_R2       0x08ULL
#define RTE_TT_R3       0x04ULL
#define RTE_TL_FULL     0x03ULL
#define STE_I           0x20ULL
#define PTE_I           0x400ULL
#define ASCE_DT_R1      0x0cULL
#define ASCE_TL_FULL    0x03ULL

#define REGION_ENTRIES  2048
#define PAGE_ENTRIES    256
#define IDENTITY_MB     16                      /* code, data, tables and lowcore, mapped V=R */
#define PHYS_BASE       (IDENTITY_MB << 20)     /* storage for the sieve starts here */
#define MAX_MB          96                      /* largest sieve: 96 MiB */
#define VA_SIEVE        (1ULL << 53)

typedef uint64_t region_table[REGION_ENTRIES] ALIGNED(4096);
typedef uint64_t page_table[PAGE_ENTRIES] ALIGNED(2048);

static region_table r1t, r2t_low, r3t_low, sgt_low, r2t_sieve, r3t_sieve, sgt_sieve;
static page_table pt_low[IDENTITY_MB], pt_sieve[MAX_MB];

static void build_tables(uint64_t pages)
{
    uint64_t i, j;

    for (i = 0; i < REGION_ENTRIES; i++) {
        r1t[i] = RTE_I | RTE_TT_R1;
        r2t_low[i] = r2t_sieve[i] = RTE_I | RTE_TT_R2;
        r3t_low[i] = r3t_sieve[i] = RTE_I | RTE_TT_R3;
        sgt_low[i] = sgt_sieve[i] = STE_I;
    }
    r1t[0] = (uint64_t)r2t_low | RTE_TT_R1 | RTE_TL_FULL;
    r2t_low[0] = (uint64_t)r3t_low | RTE_TT_R2 | RTE_TL_FULL;
    r3t_low[0] = (uint64_t)sgt_low | RTE_TT_R3 | RTE_TL_FULL;
    for (i = 0; i < IDENTITY_MB; i++) {
        sgt_low[i] = (uint64_t)pt_low[i];
        for (j = 0; j < PAGE_ENTRIES; j++)
            pt_low[i][j] = (i << 20) + (j << 12);
    }
    r1t[1] = (uint64_t)r2t_sieve | RTE_TT_R1 | RTE_TL_FULL;
    r2t_sieve[0] = (uint64_t)r3t_sieve | RTE_TT_R2 | RTE_TL_FULL;
    r3t_sieve[0] = (uint64_t)sgt_sieve | RTE_TT_R3 | RTE_TL_FULL;
    for (i = 0; i < MAX_MB; i++) {
        sgt_sieve[i] = (uint64_t)pt_sieve[i];
        for (j = 0; j < PAGE_ENTRIES; j++) {
            uint64_t page = i * PAGE_ENTRIES + j;

            /* Virtual page p uses frame p ^ 1: pairs of pages swap places, so translation is not linear. */
            pt_sieve[i][j] = page < pages ? PHYS_BASE + ((page ^ 1) << 12) : PTE_I;
        }
    }
    ctl_set(1, (uint64_t)r1t | ASCE_DT_R1 | ASCE_TL_FULL);
    asm volatile("ptlb" : : : "memory");
}

static uint64_t sieve(uint8_t *s, uint64_t n)
{
    uint64_t i, j, count = 0;

    memset(s, 0, n);
    for (i = 2; i * i < n; i++)
        if (!s[i])
            for (j = i * i; j < n; j += i)
                s[j] = 1;
    for (i = 2; i < n; i++)
        count += !s[i];
    return count;
}

int main(const char *cmdline)
{
    uint64_t n = cmdline_number(cmdline, "n", 30000000), memory = 0, pages, primes;
    unsigned cpus = 0;
    uint8_t old;

    pages = ((n + 4095) >> 12 | 1) + 1;  /* even, for the pairwise swap */
    if (sclp_read_scp_info(&memory, &cpus) != 0 || pages > (uint64_t)MAX_MB << 8 ||
        PHYS_BASE + (pages << 12) > memory) {
        printf("bench_sieve: n=%lu does not fit (at most %u MiB, storage %lu MiB)\n", n, MAX_MB, memory >> 20);
        exit(2);
    }
    build_tables(pages);
    asm volatile("stosm %0,0x04" : "=Q"(old) : : "memory");  /* DAT on */
    primes = sieve((uint8_t *)VA_SIEVE, n);
    asm volatile("stnsm %0,0xfb" : "=Q"(old) : : "memory");  /* DAT off */
    printf("bench_sieve: n=%lu primes=%lu\n", n, primes);
    disabled_wait(0xfff);
}
