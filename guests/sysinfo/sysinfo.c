/* sysinfo.c: STSI (levels 0, 1.1.1, 1.2.2, 2.2.2, 3.2.2, invalid), STIDP, STAP, STFL/STFLE, Read SCP Info. */
#include "runtime.h"

static uint8_t sysib[4096] ALIGNED(4096);

/* STSI with function code fc and selectors; returns cc, *r0 gets r0 afterwards. */
static int stsi(unsigned fc, unsigned sel1, unsigned sel2, uint64_t *r0out)
{
    register uint64_t r0 asm("0") = (uint64_t)fc << 28 | sel1;
    register uint64_t r1 asm("1") = sel2;
    int cc;

    asm volatile("stsi 0(%[addr])\n\t"
                 "ipm %[cc]\n\t"
                 "srl %[cc],28"
                 : [cc] "=d"(cc), "+d"(r0)
                 : "d"(r1), [addr] "a"(sysib)
                 : "cc", "memory");
    if (r0out)
        *r0out = r0;
    return cc;
}

static void field(const char *name, unsigned off, unsigned len)
{
    char buf[32];

    ebcdic_to_ascii(buf, sysib + off, len);
    buf[len] = 0;
    printf("  %-14s \"%s\"\n", name, buf);
}

static uint16_t be16(unsigned off) { return (uint16_t)(sysib[off] << 8 | sysib[off + 1]); }
static uint32_t be32(unsigned off) { return (uint32_t)be16(off) << 16 | be16(off + 2); }

static int stfle(uint64_t *list, unsigned n, uint64_t *r0out)
{
    register uint64_t r0 asm("0") = n - 1;
    int cc;

    asm volatile("stfle %[list]\n\t"
                 "ipm %[cc]\n\t"
                 "srl %[cc],28"
                 : [cc] "=d"(cc), "+d"(r0), [list] "=Q"(*(uint64_t(*)[32])list)
                 :
                 : "cc", "memory");
    *r0out = r0;
    return cc;
}

static int facility(const uint64_t *list, unsigned bit)
{
    return (list[bit / 64] >> (63 - bit % 64)) & 1;
}

int main(const char *cmdline)
{
    static const unsigned bits[] = { 0, 1, 2, 3, 7, 18, 21, 25, 129, 158, 161 };
    uint64_t r0, cpuid, fac[32], memory;
    unsigned i, cpus;
    int cc;

    printf("sysinfo\n");
    cc = stsi(0, 0, 0, &r0);
    printf("stsi 0.0.0: cc=%d level=%lu\n", cc, r0 >> 28);

    memset(sysib, 0, sizeof(sysib));
    cc = stsi(1, 1, 1, NULL);
    printf("stsi 1.1.1: cc=%d\n", cc);
    field("manufacturer", 32, 16);
    field("type", 48, 4);
    field("model capacity", 64, 16);
    field("sequence", 80, 16);
    field("plant", 96, 4);

    memset(sysib, 0, sizeof(sysib));
    cc = stsi(1, 2, 2, NULL);
    printf("stsi 1.2.2: cc=%d capability=0x%08x cpus total=%u configured=%u standby=%u reserved=%u\n", cc, be32(32),
           be16(36), be16(38), be16(40), be16(42));

    memset(sysib, 0, sizeof(sysib));
    cc = stsi(2, 2, 2, NULL);
    printf("stsi 2.2.2: cc=%d lpar number=%u cpus total=%u configured=%u standby=%u reserved=%u caf=%u\n", cc,
           be16(32), be16(36), be16(38), be16(40), be16(42), be32(52));
    field("lpar name", 44, 8);

    memset(sysib, 0, sizeof(sysib));
    cc = stsi(3, 2, 2, NULL);
    printf("stsi 3.2.2: cc=%d count=%u cpus total=%u configured=%u standby=%u reserved=%u\n", cc, sysib[31] & 0xf,
           be16(32 + 4), be16(32 + 6), be16(32 + 8), be16(32 + 10));
    field("vm name", 32 + 12, 8);
    field("control prog", 32 + 24, 16);
    printf("  capability     %u\n", be32(32 + 20));

    printf("stsi 4.0.0: cc=%d\n", stsi(4, 0, 0, NULL));
    printf("stsi 1.1.9: cc=%d\n", stsi(1, 1, 9, NULL));
    printf("stsi 3.3.3: cc=%d\n", stsi(3, 3, 3, NULL));

    asm volatile("stidp %0" : "=Q"(cpuid));
    printf("stidp: 0x%016lx (version 0x%02lx, type %04lx, format bit %lu)\n", cpuid, cpuid >> 56,
           (cpuid >> 16) & 0xffff, (cpuid >> 15) & 1);
    printf("stap: %u\n", stap());

    memset(fac, 0, sizeof(fac));
    cc = stfle(fac, 32, &r0);
    printf("stfle: cc=%d, bits", cc);
    for (i = 0; i < sizeof(bits) / sizeof(bits[0]); i++)
        printf(" %u=%d", bits[i], facility(fac, bits[i]));
    printf("\n");
    asm volatile("stfl 0" : : : "memory");
    printf("stfl word at 0xc8 equals stfle bits 0-31: %s\n",
           (uint32_t)(abs_read64(LC_STFL_FAC) >> 32) == (uint32_t)(fac[0] >> 32) ? "yes" : "no");

    cc = sclp_read_scp_info(&memory, &cpus);
    printf("read scp info: rc=%d memory=%lu MiB cpus=%u\n", cc, memory >> 20, cpus);
    return 0;
}
