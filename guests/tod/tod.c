/* tod.c: the TOD clock (STCK, STCKE, STCKF, SCK, SCKPF), clock comparator and CPU timer registers. */
#include "runtime.h"

#define TOD_SECOND (1000000ULL << 12)  /* bit 51 is one microsecond */

static int stck(uint64_t *v)
{
    int cc;

    asm volatile("stck %[v]\n\tipm %[cc]\n\tsrl %[cc],28" : [cc] "=d"(cc), [v] "=Q"(*v) : : "cc");
    return cc;
}

static int stckf(uint64_t *v)
{
    int cc;

    asm volatile("stckf %[v]\n\tipm %[cc]\n\tsrl %[cc],28" : [cc] "=d"(cc), [v] "=Q"(*v) : : "cc");
    return cc;
}

struct tod_ext {
    uint8_t bytes[16];
};

static int stcke(struct tod_ext *v)
{
    int cc;

    asm volatile("stcke %[v]\n\tipm %[cc]\n\tsrl %[cc],28" : [cc] "=d"(cc), [v] "=Q"(*v) : : "cc");
    return cc;
}

static int sck(uint64_t v)
{
    int cc;

    asm volatile("sck %[v]\n\tipm %[cc]\n\tsrl %[cc],28" : [cc] "=d"(cc) : [v] "Q"(v) : "cc");
    return cc;
}

static uint64_t ext_tod(const struct tod_ext *e)
{
    uint64_t v = 0;
    int i;

    for (i = 1; i <= 8; i++)
        v = v << 8 | e->bytes[i];
    return v;
}

static const char *yn(int b) { return b ? "yes" : "no"; }

int main(const char *cmdline)
{
    uint64_t a, b, c, f, v, ckc;
    int64_t t;
    struct tod_ext e;
    unsigned i;
    int cc1, cc2, cc3;

    printf("tod\n");
    cc1 = stck(&a);
    for (i = 0; i < 1000000; i++) {
        cc2 = stck(&b);
        if (b != a)
            break;
    }
    printf("stck: cc=%d, then cc=%d; advances: %s\n", cc1, cc2, yn(b > a));

    stck(&a);
    cc1 = stcke(&e);
    cc2 = stckf(&f);
    stck(&c);
    printf("stcke: cc=%d epoch index=%u, tod between two stck: %s\n", cc1, e.bytes[0],
           yn(ext_tod(&e) >= a && ext_tod(&e) <= c));
    printf("stckf: cc=%d, between two stck: %s\n", cc2, yn(f >= a && f <= c));

    /* Set the clock and read it back: it continues from the value set. */
    v = 0x0123456789000000ULL;
    cc3 = sck(v);
    stck(&a);
    printf("sck: cc=%d; stck after it within 1 s of the value: %s\n", cc3, yn(a >= v && a - v < TOD_SECOND));

    /* TOD programmable register: STCKE stores it in bytes 14-15. */
    asm volatile("lgfi %%r0,0x1234\n\tsckpf" : : : "r0");
    stcke(&e);
    printf("sckpf 0x1234: stcke programmable field=0x%02x%02x\n", e.bytes[14], e.bytes[15]);
    asm volatile("lghi %%r0,0\n\tsckpf" : : : "r0");

    /* Clock comparator and CPU timer registers. */
    ckc = 0xfedcba9876543210ULL;
    asm volatile("sckc %0" : : "Q"(ckc));
    asm volatile("stckc %0" : "=Q"(v));
    printf("sckc/stckc round trip: %s\n", yn(v == ckc));
    ckc = ~0ULL;
    asm volatile("sckc %0" : : "Q"(ckc));
    v = TOD_SECOND;
    asm volatile("spt %0" : : "Q"(v));
    asm volatile("stpt %0" : "=Q"(t));
    printf("spt 1 s/stpt: positive and not above 1 s: %s\n", yn(t > 0 && (uint64_t)t <= TOD_SECOND));
    for (i = 0; i < 100000; i++)
        asm volatile("stpt %0" : "=Q"(v));
    printf("cpu timer decreases: %s\n", yn((int64_t)v < t));
    return 0;
}
